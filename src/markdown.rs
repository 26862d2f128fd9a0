//! Markdown to safe HTML: what members write can format text and link out, never run script.
//!
//! Links are marked `rel="nofollow ugc noopener"`; only `http`, `https` and `mailto` links
//! survive, so `javascript:` and `data:` URLs are dropped with any raw HTML that carried them.
//! [`link_targets`] reads the links back out of the rendered HTML for the unsafe-link check.

use ammonia::Builder;
use html5ever::tendril::StrTendril;
use html5ever::tokenizer::{
    BufferQueue, StartTag as StartTagKind, TagToken, Token, TokenSink, TokenSinkResult, Tokenizer,
};
use pulldown_cmark::{Options, Parser, html};
use std::cell::RefCell;
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

/// The `href` of every link in HTML that [`render`] produced, as a browser reads them (entities
/// decoded), in document order. Reading what was rendered, rather than the Markdown, sees every
/// way a link can be written: inline, reference, autolink or raw HTML.
pub fn link_targets(rendered: &str) -> Vec<String> {
    start_tags(rendered)
        .into_iter()
        .filter(|tag| tag.name == "a")
        .flat_map(|tag| tag.attributes.into_iter())
        .filter(|(name, _)| name == "href")
        .map(|(_, value)| value)
        .collect()
}

/// A start tag as a browser's tokenizer reads it: lowercase name, attributes with entities decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartTag {
    pub name: String,
    pub attributes: Vec<(String, String)>,
}

/// Every start tag of some HTML, in document order, read with the HTML5 tokenizer (so the way a
/// browser would see them, whatever the spelling). The fuzz targets and the property tests use it
/// to check that nothing that could run script survives [`render`].
pub fn start_tags(html: &str) -> Vec<StartTag> {
    struct Tags(RefCell<Vec<StartTag>>);
    impl TokenSink for Tags {
        type Handle = ();
        fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
            if let TagToken(tag) = token
                && tag.kind == StartTagKind
            {
                self.0.borrow_mut().push(StartTag {
                    name: tag.name.to_string(),
                    attributes: tag
                        .attrs
                        .into_iter()
                        .map(|a| (a.name.local.to_string(), a.value.to_string()))
                        .collect(),
                });
            }
            TokenSinkResult::Continue
        }
    }
    let input = BufferQueue::default();
    input.push_back(StrTendril::from_slice(html));
    let tokenizer = Tokenizer::new(Tags(RefCell::new(Vec::new())), Default::default());
    let _ = tokenizer.feed(&input);
    tokenizer.end();
    tokenizer.sink.0.take()
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
    fn link_targets_are_read_from_the_rendered_html_with_entities_decoded() {
        let html = render(
            "[one](https://one.example/a?b=1&c=2) and <https://two.example> and \
             <a href=\"https://thr&#101;e.example/\">three</a> and [ref][r] and \
             [gone](javascript:alert(1)) and https://bare.example\n\n[r]: //four.example/x",
        );
        assert_eq!(
            link_targets(&html),
            [
                "https://one.example/a?b=1&c=2",
                "https://two.example",
                "https://three.example/",
                "//four.example/x",
            ]
        );
        assert!(link_targets("<p>no links</p>").is_empty());
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
