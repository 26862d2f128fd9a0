//! The spam and unsafe-link check (promises A4 and A6): whether a new or edited post waits for a
//! moderator. It compares the links of the post's rendered HTML, and web addresses written as
//! plain text, with the operator's list of unsafe domains, and the post's text with the
//! operator's spam patterns (`[moderation]` in the configuration).
//!
//! It only says whether and why to hold a post; it never removes anything, and what matched is
//! never logged or recorded: the reason is a word from a fixed list.

use crate::markdown;
use std::sync::LazyLock;
use url::Url;

/// Why a post waits for a moderator. Stored in `posts.held_reason` and written in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldReason {
    /// A link, or a web address in the text, points at an unsafe domain or one of its
    /// subdomains.
    UnsafeLink,
    /// The text contains one of the spam patterns.
    SpamPattern,
}

impl HoldReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnsafeLink => "unsafe_link",
            Self::SpamPattern => "spam_pattern",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::UnsafeLink, Self::SpamPattern]
            .into_iter()
            .find(|reason| reason.as_str() == raw)
    }

    /// The reason in words, for the author and the moderators.
    pub fn describe(self) -> &'static str {
        match self {
            Self::UnsafeLink => "it links to a site on the list of unsafe sites",
            Self::SpamPattern => "its text matches a known spam pattern",
        }
    }
}

/// A configured list entry the check cannot use. Entries are the operator's configuration, not
/// personal data, but the error names the entry by position only, like every other setting.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterListError {
    #[error(
        "moderation.unsafe_domains: entry {position} is not a domain name such as spam.example"
    )]
    NotADomain { position: usize },
    #[error("moderation.spam_patterns: entry {position} is blank")]
    BlankPattern { position: usize },
}

/// The check, with its lists parsed once: domains as the URL parser writes hosts (lowercase,
/// international names in their `xn--` form), patterns lowercase with single spaces.
#[derive(Debug, Clone, Default)]
pub struct SpamFilter {
    unsafe_domains: Vec<String>,
    spam_patterns: Vec<String>,
}

impl SpamFilter {
    pub fn new(
        unsafe_domains: &[String],
        spam_patterns: &[String],
    ) -> Result<Self, FilterListError> {
        let unsafe_domains = unsafe_domains
            .iter()
            .enumerate()
            .map(|(index, raw)| {
                domain_of_entry(raw).ok_or(FilterListError::NotADomain {
                    position: index + 1,
                })
            })
            .collect::<Result<_, _>>()?;
        let spam_patterns = spam_patterns
            .iter()
            .enumerate()
            .map(|(index, raw)| {
                let pattern = normalize_text(raw);
                if pattern.is_empty() {
                    Err(FilterListError::BlankPattern {
                        position: index + 1,
                    })
                } else {
                    Ok(pattern)
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            unsafe_domains,
            spam_patterns,
        })
    }

    /// Whether a post must wait for a moderator, and why: `markdown` is what the member wrote,
    /// `rendered` the HTML [`markdown::render`] made of it.
    pub fn check(&self, markdown: &str, rendered: &str) -> Option<HoldReason> {
        if !self.unsafe_domains.is_empty() {
            let lowered = markdown.to_lowercase();
            let links = markdown::link_targets(rendered);
            let hosts = links
                .iter()
                .filter_map(|href| host_of_link(href))
                .chain(bare_addresses(&lowered).filter_map(host_of_address));
            for host in hosts {
                if self
                    .unsafe_domains
                    .iter()
                    .any(|domain| is_same_or_subdomain(&host, domain))
                {
                    return Some(HoldReason::UnsafeLink);
                }
            }
        }
        if !self.spam_patterns.is_empty() {
            let text = normalize_text(markdown);
            if self
                .spam_patterns
                .iter()
                .any(|pattern| text.contains(pattern.as_str()))
            {
                return Some(HoldReason::SpamPattern);
            }
        }
        None
    }
}

/// Lowercase, with every run of white space made one space, so that patterns match whatever
/// the line breaks and capitals.
fn normalize_text(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// A list entry as a host: `Spam.Example`, `.spam.example`, `*.spam.example` and
/// `spam.example.` all mean `spam.example`. Anything with a port, path or user is refused.
fn domain_of_entry(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    let trimmed = trimmed.strip_prefix("*.").unwrap_or(trimmed);
    let trimmed = trimmed.trim_start_matches('.').trim_end_matches('.');
    if trimmed.is_empty() {
        return None;
    }
    let url = Url::parse(&format!("http://{trimmed}/")).ok()?;
    let host = url.host_str()?.trim_end_matches('.').to_string();
    // Parsing must give back exactly a host: "a.example/x", "a.example:81" or "u@a.example"
    // would parse, as something else.
    (url.as_str() == format!("http://{host}/")).then_some(host)
}

/// Relative links in a post point at the forum itself; they are resolved against this
/// stand-in address and then left out, except those like `//spam.example/` that name a host.
static FORUM_ITSELF: LazyLock<Url> =
    LazyLock::new(|| Url::parse("https://forum.invalid/").expect("a valid URL"));

/// The host a link leads to, as a browser would find it (percent-escapes, backslashes and
/// international names handled by the WHATWG URL parser); the domain of a `mailto:` address.
fn host_of_link(href: &str) -> Option<String> {
    let url = match Url::parse(href.trim()) {
        Ok(url) => url,
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            let url = FORUM_ITSELF.join(href.trim()).ok()?;
            if url.host_str() == FORUM_ITSELF.host_str() {
                return None;
            }
            url
        }
        Err(_) => return None,
    };
    if url.scheme() == "mailto" {
        // The parser leaves a mailto address as it was written; reading its domain as a host
        // decodes it the way the list's entries are.
        let (_, domain) = url.path().rsplit_once('@')?;
        return domain_of_entry(domain);
    }
    Some(url.host_str()?.trim_end_matches('.').to_string())
}

/// Web addresses written as plain text (`http://…`, `https://…`), which a reader may copy even
/// though they are not links; `lowered` is the post's text in lowercase.
fn bare_addresses(lowered: &str) -> impl Iterator<Item = &str> {
    let ends = |c: char| c.is_whitespace() || "<>\"'()[]{}`|".contains(c);
    lowered
        .match_indices("http")
        .map(|(start, _)| &lowered[start..])
        .filter(|rest| rest.starts_with("http://") || rest.starts_with("https://"))
        .map(move |rest| rest.split(ends).next().unwrap_or(rest))
}

fn host_of_address(address: &str) -> Option<String> {
    let url = Url::parse(address).ok()?;
    Some(url.host_str()?.trim_end_matches('.').to_string())
}

/// `host` is `domain` or one of its subdomains (`a.spam.example` for `spam.example`, not
/// `notspam.example`). Both are lowercase, as the URL parser writes hosts.
fn is_same_or_subdomain(host: &str, domain: &str) -> bool {
    host == domain
        || host
            .strip_suffix(domain)
            .is_some_and(|prefix| prefix.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(domains: &[&str], patterns: &[&str]) -> SpamFilter {
        let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        SpamFilter::new(&owned(domains), &owned(patterns)).unwrap()
    }

    fn verdict(filter: &SpamFilter, markdown: &str) -> Option<HoldReason> {
        filter.check(markdown, &markdown::render(markdown))
    }

    #[test]
    fn a_domain_matches_itself_and_its_subdomains_whatever_the_case() {
        let check = filter(&["Spam.Example"], &[]);
        for post in [
            "[deal](https://spam.example/offer)",
            "[deal](http://WWW.SPAM.EXAMPLE)",
            "<https://a.b.spam.example/x>",
            "[deal](https://spam.example./)",
            "[deal](https://user@spam.example:8443/)",
            "[deal](//cdn.spam.example/x)",
            "<a href=\"https://spam&#46;example/\">deal</a>",
            "[deal](https://spam%2Eexample/)",
            "[deal](mailto:sales@Spam.Example)",
            "Go to https://shop.spam.example/now.",
            "(see HTTPS://SPAM.EXAMPLE)",
        ] {
            assert_eq!(
                verdict(&check, post),
                Some(HoldReason::UnsafeLink),
                "{post}"
            );
        }
    }

    #[test]
    fn other_domains_and_links_to_the_forum_itself_pass() {
        let check = filter(&["spam.example"], &[]);
        for post in [
            "[fine](https://notspam.example/)",
            "[fine](https://spam.example.org/)",
            "[fine](https://example/spam.example)",
            "[fine](/t/spam.example/1)",
            "[fine](https://good.example/?next=https%3A%2F%2Fspam.example)",
            "spam.example is a name, not an address",
            "[gone](javascript:alert(1))",
            "no links at all",
        ] {
            assert_eq!(verdict(&check, post), None, "{post}");
        }
    }

    #[test]
    fn international_domains_match_in_either_form() {
        let check = filter(&["bücher.example"], &[]);
        assert_eq!(
            verdict(&check, "[b](https://shop.xn--bcher-kva.example/)"),
            Some(HoldReason::UnsafeLink)
        );
        assert_eq!(
            verdict(&check, "[b](https://BÜCHER.example/)"),
            Some(HoldReason::UnsafeLink)
        );
    }

    #[test]
    fn spam_patterns_match_text_whatever_the_case_and_line_breaks() {
        let check = filter(&[], &["Cheap   Pills"]);
        assert_eq!(
            verdict(&check, "Buy CHEAP\npills today"),
            Some(HoldReason::SpamPattern)
        );
        assert_eq!(verdict(&check, "Pills are not cheap"), None);
        assert_eq!(verdict(&filter(&[], &[]), "cheap pills"), None);
    }

    #[test]
    fn list_entries_are_read_leniently_and_refused_when_not_domains() {
        let check = filter(&["*.spam.example", ".junk.example."], &[]);
        assert_eq!(check.unsafe_domains, ["spam.example", "junk.example"]);
        for bad in [
            "",
            "  ",
            "spam.example/path",
            "spam.example:81",
            "me@spam.example",
            "two words",
        ] {
            assert_eq!(
                SpamFilter::new(&["ok.example".into(), bad.into()], &[]).unwrap_err(),
                FilterListError::NotADomain { position: 2 },
                "{bad:?}"
            );
        }
        assert_eq!(
            SpamFilter::new(&[], &[" ".into()]).unwrap_err(),
            FilterListError::BlankPattern { position: 1 }
        );
    }

    #[test]
    fn reasons_are_stored_as_fixed_words() {
        for reason in [HoldReason::UnsafeLink, HoldReason::SpamPattern] {
            assert_eq!(HoldReason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(HoldReason::parse("anything else"), None);
    }
}
