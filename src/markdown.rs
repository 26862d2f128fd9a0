//! Markdown to safe HTML: what members write can format text and link out, never run script.
//!
//! Links are marked `rel="nofollow ugc noopener"`; only `http`, `https` and `mailto` links
//! survive, so `javascript:` and `data:` URLs are dropped with any raw HTML that carried them.

use ammonia::Builder;
use pulldown_cmark::{Options, Parser, html};
use std::collections::HashSet;
use std::sync::LazyLock;

static SANITIZER: LazyLock<Builder<'static>> = LazyLock::new(|| {
    let mut builder = Builder::default();
    builder
        .link_rel(Some("nofollow ugc noopener"))
        .url_schemes(HashSet::from(["http", "https", "mailto"]))
        .add_generic_attributes(["title"])
        .rm_tags(["img"]);
    builder
});

/// Renders a member's Markdown as sanitized HTML.
pub fn render(markdown: &str) -> String {
    let mut options = Options::empty();
    options.insert(Options::ENABLE_STRIKETHROUGH);
    options.insert(Options::ENABLE_TABLES);
    let mut unsafe_html = String::with_capacity(markdown.len() * 5 / 4);
    html::push_html(&mut unsafe_html, Parser::new_ext(markdown, options));
    SANITIZER.clean(&unsafe_html).to_string()
}

/// HTML for text known to be plain paragraphs (generated demo text): escapes and wraps, giving
/// what [`render`] gives for the same input without paying for the sanitizer.
pub fn render_plain_paragraphs(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for paragraph in text.split("\n\n") {
        out.push_str("<p>");
        for c in paragraph.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                c => out.push(c),
            }
        }
        out.push_str("</p>\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_survives() {
        let html = render("**bold** and *it*\n\n- one\n- two");
        assert!(html.contains("<strong>bold</strong>"));
        assert!(html.contains("<li>one</li>"));
    }

    /// Proves: A4
    #[test]
    fn script_and_javascript_links_are_removed() {
        let corpus = [
            "<script>alert(1)</script>",
            "[x](javascript:alert(1))",
            "<a href=\"javascript:alert(1)\">x</a>",
            "<img src=x onerror=alert(1)>",
            "<div onclick=\"alert(1)\">x</div>",
            "[x](data:text/html;base64,PHNjcmlwdD4=)",
            "<iframe src=\"https://evil.example\"></iframe>",
            "<svg onload=alert(1)>",
        ];
        for input in corpus {
            let html = render(input).to_lowercase();
            for bad in [
                "<script",
                "javascript:",
                "onerror",
                "onclick",
                "onload",
                "<iframe",
                "data:",
            ] {
                assert!(!html.contains(bad), "{input} rendered as {html}");
            }
        }
    }

    /// Proves: A4
    #[test]
    fn links_are_marked_as_user_content() {
        let html = render("[site](https://example.org)");
        assert!(html.contains("rel=\"nofollow ugc noopener\""), "{html}");
    }

    #[test]
    fn plain_paragraphs_render_like_markdown() {
        let text = "Hello there & welcome.\n\nSecond paragraph, with \"quotes\".";
        assert_eq!(render_plain_paragraphs(text), render(text));
        // Anything that looks like markup stays inert text.
        assert_eq!(
            render_plain_paragraphs("<b>x</b>"),
            "<p>&lt;b&gt;x&lt;/b&gt;</p>\n"
        );
    }
}
