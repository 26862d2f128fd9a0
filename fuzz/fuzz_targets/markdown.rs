//! Any text a member can post renders without panicking into HTML that cannot run script, and
//! the unsafe-link check can read its links back.
#![no_main]

#[path = "../../tests/oracles/mod.rs"]
mod oracles;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Bodies reach the renderer as UTF-8 text (the form decoding refuses anything else).
    let Ok(markdown) = std::str::from_utf8(data) else {
        return;
    };
    let html = covenant::markdown::render(markdown);
    oracles::assert_inert(markdown, &html);
    let _ = covenant::markdown::link_targets(&html);
});
