//! What must hold of the Markdown renderer and the form decoding whatever a stranger sends,
//! written independently of the code under test. Shared by the property tests
//! (tests/untrusted_input.rs) and the fuzz targets (fuzz/fuzz_targets), which include this file.
#![allow(dead_code)]

use covenant::error::Error;
use covenant::markdown::start_tags;

/// Elements that run script, load other documents or take over the page.
const FORBIDDEN_TAGS: &[&str] = &[
    "script", "iframe", "frame", "frameset", "object", "embed", "applet", "style", "link", "meta",
    "base", "form", "input", "button", "textarea", "select", "svg", "math", "img", "video",
    "audio", "source", "template", "noscript",
];

/// Attributes whose value a browser follows as a URL.
const URL_ATTRIBUTES: &[&str] = &[
    "href",
    "src",
    "action",
    "formaction",
    "xlink:href",
    "cite",
    "background",
    "poster",
];

/// Panics, naming the input, when the HTML rendered from `markdown` could run script: a
/// `<script` anywhere, a forbidden element, an event-handler (`on*=`) or `style` attribute, or
/// a URL attribute whose scheme (read as a browser does, ignoring tabs, newlines and leading
/// blanks) is anything but http, https or mailto.
pub fn assert_inert(markdown: &str, html: &str) {
    assert!(
        !html.to_ascii_lowercase().contains("<script"),
        "{markdown:?} rendered a script tag: {html}"
    );
    for tag in start_tags(html) {
        assert!(
            !FORBIDDEN_TAGS.contains(&tag.name.as_str()),
            "{markdown:?} rendered <{}>: {html}",
            tag.name
        );
        for (name, value) in &tag.attributes {
            let name = name.to_ascii_lowercase();
            assert!(
                !name.starts_with("on") && name != "style" && name != "srcdoc",
                "{markdown:?} rendered attribute {name}: {html}"
            );
            if URL_ATTRIBUTES.contains(&name.as_str())
                && let Some(scheme) = url_scheme(value)
            {
                assert!(
                    ["http", "https", "mailto"].contains(&scheme.as_str()),
                    "{markdown:?} rendered a {scheme}: URL: {html}"
                );
            }
        }
    }
}

/// The scheme of a URL as a browser reads it, lowercased, or None for a relative URL.
fn url_scheme(value: &str) -> Option<String> {
    let cleaned: String = value
        .trim_start_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let end = cleaned.find([':', '/', '?', '#'])?;
    if !cleaned[end..].starts_with(':') {
        return None;
    }
    let scheme = &cleaned[..end];
    // Anything else before the colon makes it a relative URL (a path segment).
    let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    is_scheme.then(|| scheme.to_ascii_lowercase())
}

/// The name/value pairs of a URL-encoded body, or None when a name or value is not UTF-8 once
/// percent-decoded (which the site refuses rather than replacing characters). Pieces are split
/// on `&`, empty pieces skipped, names split from values at the first `=`, `+` is a space, and
/// `%` not followed by two hex digits stays as it is.
pub fn form_pairs(body: &[u8]) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for piece in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match piece.iter().position(|&b| b == b'=') {
            Some(at) => (&piece[..at], &piece[at + 1..]),
            None => (piece, &piece[piece.len()..]),
        };
        pairs.push((percent_decode(name)?, percent_decode(value)?));
    }
    Some(pairs)
}

fn percent_decode(raw: &[u8]) -> Option<String> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let byte = match raw[i] {
            b'+' => b' ',
            b'%' => match (
                raw.get(i + 1).and_then(|&b| hex(b)),
                raw.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(high), Some(low)) => {
                    i += 2;
                    high * 16 + low
                }
                _ => b'%',
            },
            other => other,
        };
        out.push(byte);
        i += 1;
    }
    String::from_utf8(out).ok()
}

pub const REGISTER_FIELDS: &[&str] = &[
    "csrf",
    "username",
    "email",
    "password",
    "birth_year",
    "country",
    "us_state",
    "birth_date",
    "parent_email",
    "news",
];
pub const SIGN_IN_FIELDS: &[&str] = &["csrf", "login", "password", "code"];
pub const BODY_FIELDS: &[&str] = &["csrf", "body"];
pub const NEW_TOPIC_FIELDS: &[&str] = &["csrf", "category", "title", "body"];
pub const PUBLIC_REQUEST_FIELDS: &[&str] = &[
    "csrf",
    "requester_name",
    "requester_email",
    "relationship",
    "subject_email",
    "country",
    "state",
    "postal_code",
];
pub const ACCOUNT_REQUEST_FIELDS: &[&str] = &["csrf", "right", "jurisdiction"];

/// Checks the verdict of decoding `body` into a form whose fields are all optional text named
/// `fields`: accepted exactly when the body is UTF-8 text (see [`form_pairs`]) and names no
/// field twice; a refusal is a 400 whose message names at most a field, never a submitted value.
pub fn assert_form_verdict<T>(body: &[u8], fields: &[&str], verdict: Result<T, Error>) {
    let expected = match form_pairs(body) {
        None => Err("the form is not valid UTF-8 text".to_string()),
        Some(pairs) => match fields
            .iter()
            .find(|field| pairs.iter().filter(|(name, _)| name == *field).count() > 1)
        {
            Some(field) => Err(format!(
                "the form could not be read: duplicate field `{field}`"
            )),
            None => Ok(()),
        },
    };
    match (verdict, expected) {
        (Ok(_), Ok(())) => {}
        (Err(Error::BadRequest(message)), Err(expected)) => {
            // With several repeated fields, any one of them may be named.
            let names_a_field = fields.iter().any(|field| {
                message == format!("the form could not be read: duplicate field `{field}`")
            });
            assert!(
                message == expected || (names_a_field && expected.contains("duplicate")),
                "{body:?}: refused with {message:?}, expected {expected:?}"
            );
        }
        (Err(other), expected) => panic!("{body:?}: refused with {other:?}, expected {expected:?}"),
        (Ok(_), Err(expected)) => panic!("{body:?}: accepted, expected {expected:?}"),
    }
}
