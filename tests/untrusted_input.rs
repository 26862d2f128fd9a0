//! The fuzz targets' properties, run by the ordinary suite on every build: the Markdown renderer
//! and the form decoding take arbitrary input without panicking, the HTML cannot run script, and
//! a form is accepted exactly when it is UTF-8 text naming no field twice. The fuzz targets
//! (fuzz/, run with cargo-fuzz on nightly) search the same properties far longer; a crash they
//! find becomes a case in `regressions` below.

mod oracles;

use covenant::markdown::render;
use covenant::web::forms::decode_form;
use covenant::web::pages::{BodyForm, NewTopicForm, RegisterForm, SignInForm};
use covenant::web::requests::{AccountRequestForm, PublicForm};
use proptest::prelude::*;

/// Markdown-ish text: pieces of syntax, HTML and dangerous URLs mixed with arbitrary text, so
/// that the cases reach links, raw HTML, tables and entities rather than plain paragraphs.
fn markdownish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        any::<String>(),
        "[a-z<>\"'=:/ ]{0,12}",
        Just("<script>".to_string()),
        Just("</script>".to_string()),
        Just("<a href=\"".to_string()),
        Just("<img src=x onerror=".to_string()),
        Just("javascript:".to_string()),
        Just("JaVa\tScRiPt:".to_string()),
        Just("&#106;avascript:".to_string()),
        Just("data:text/html,".to_string()),
        Just("vbscript:".to_string()),
        Just("](".to_string()),
        Just("[x]".to_string()),
        Just(")".to_string()),
        Just("<".to_string()),
        Just(">".to_string()),
        Just("\"".to_string()),
        Just("\n\n".to_string()),
        Just("\n| a | b |\n|---|---|\n".to_string()),
        Just("[r]: ".to_string()),
        Just("<svg onload=".to_string()),
        Just("<div style=\"".to_string()),
        Just("<iframe srcdoc=".to_string()),
        Just("`".to_string()),
        Just("~~".to_string()),
        Just("**".to_string()),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

/// A URL-encoded body built from name/value pairs of arbitrary bytes (so some are not UTF-8),
/// names drawn mostly from the forms' own fields (so some repeat).
type BytePairs = Vec<(Vec<u8>, Vec<u8>)>;

fn form_body() -> impl Strategy<Value = (BytePairs, Vec<u8>)> {
    let name = prop_oneof![
        3 => proptest::sample::select(oracles::REGISTER_FIELDS.iter().chain(oracles::PUBLIC_REQUEST_FIELDS).chain(["body", "title", "login", "code", "right"].iter()).copied().collect::<Vec<_>>())
            .prop_map(|n| n.as_bytes().to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..8),
    ];
    let value = prop_oneof![
        3 => any::<String>().prop_map(String::into_bytes),
        1 => proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec((name, value), 0..8).prop_map(|pairs| {
        let body = pairs
            .iter()
            .map(|(n, v)| {
                format!(
                    "{}={}",
                    url::form_urlencoded::byte_serialize(n).collect::<String>(),
                    url::form_urlencoded::byte_serialize(v).collect::<String>()
                )
            })
            .collect::<Vec<_>>()
            .join("&")
            .into_bytes();
        (pairs, body)
    })
}

fn check_every_form(body: &[u8]) {
    assert_eq!(
        decode_form::<Vec<(String, String)>>(body).ok(),
        oracles::form_pairs(body),
        "{body:?}"
    );
    oracles::assert_form_verdict(
        body,
        oracles::REGISTER_FIELDS,
        decode_form::<RegisterForm>(body),
    );
    oracles::assert_form_verdict(
        body,
        oracles::SIGN_IN_FIELDS,
        decode_form::<SignInForm>(body),
    );
    oracles::assert_form_verdict(body, oracles::BODY_FIELDS, decode_form::<BodyForm>(body));
    oracles::assert_form_verdict(
        body,
        oracles::NEW_TOPIC_FIELDS,
        decode_form::<NewTopicForm>(body),
    );
    oracles::assert_form_verdict(
        body,
        oracles::PUBLIC_REQUEST_FIELDS,
        decode_form::<PublicForm>(body),
    );
    oracles::assert_form_verdict(
        body,
        oracles::ACCOUNT_REQUEST_FIELDS,
        decode_form::<AccountRequestForm>(body),
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Proves: A4
    #[test]
    fn any_markdown_renders_to_html_that_cannot_run_script(markdown in markdownish()) {
        let html = render(&markdown);
        oracles::assert_inert(&markdown, &html);
        let _ = covenant::markdown::link_targets(&html);
    }

    /// Proves: A4
    #[test]
    fn any_form_body_gets_the_expected_verdict_never_a_panic((pairs, body) in form_body()) {
        check_every_form(&body);
        // What was sent comes back exactly when every name and value was text.
        let sent: Option<Vec<(String, String)>> = pairs
            .into_iter()
            .map(|(n, v)| Some((String::from_utf8(n).ok()?, String::from_utf8(v).ok()?)))
            .collect();
        prop_assert_eq!(decode_form::<Vec<(String, String)>>(&body).ok(), sent);
    }

    /// Proves: A4
    #[test]
    fn any_bytes_as_a_form_body_get_the_expected_verdict(body in proptest::collection::vec(prop_oneof![any::<u8>(), Just(b'%'), Just(b'&'), Just(b'='), Just(b'+')], 0..64)) {
        check_every_form(&body);
    }
}

/// Inputs the fuzz targets or the properties once found interesting, kept as fixed cases.
mod regressions {
    use super::*;

    /// Proves: A4
    #[test]
    fn markdown_cases() {
        for markdown in [
            "<a href=\"java\tscript:alert(1)\">x</a>",
            "[x](<javascript:alert(1)>)",
            "[x]: javascript:alert(1)\n\n[x]",
            "<a href=\"&#x6A;avascript:alert(1)\">x</a>",
            "<a href=\" javascript:alert(1)\">x</a>",
            "<scr<script>ipt>alert(1)</script>",
            "| <script>x</script> |\n|---|\n| y |",
        ] {
            oracles::assert_inert(markdown, &render(markdown));
        }
    }

    /// Proves: A4
    #[test]
    fn form_cases() {
        for body in [
            &b"%"[..],
            b"%%",
            b"a=%",
            b"a=%F",
            b"a=%+A",
            b"%C3%A9=%C3",
            b"csrf=1&csrf=2",
            b"&&=&",
            b"=\xff",
            b"news",
        ] {
            check_every_form(body);
        }
        assert!(decode_form::<RegisterForm>(b"csrf=1&csrf=2").is_err());
        assert!(decode_form::<RegisterForm>(b"title=%FF").is_err());
    }
}
