//! 2-step verification: TOTP (RFC 6238: SHA-1, six digits, 30-second steps, one step of clock
//! drift either way) and single-use recovery codes. Pure functions; the store remembers the last
//! step used, so a code cannot be replayed within its window.

use crate::accounts::token_digest;
use rand::RngExt;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Builder, Secret, Totp};

pub const STEP_SECONDS: i64 = 30;
pub const RECOVERY_CODES: usize = 10;
const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// A new random secret (160 bits), base32 as authenticator apps take it.
pub fn new_secret() -> String {
    Secret::generate().to_base32()
}

fn totp(secret: &str, account: &str, issuer: &str) -> anyhow::Result<Totp> {
    let secret = Secret::try_from_base32(secret)
        .map_err(|e| anyhow::anyhow!("a stored 2-step secret is not base32: {e:?}"))?;
    // Labels may not contain ':'; usernames never do, site names might.
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(STEP_SECONDS as u64)
        .with_secret(secret)
        .with_issuer(Some(issuer.replace(':', " ")))
        .with_account_name(account.replace(':', " "))
        .build()
        .map_err(|e| anyhow::anyhow!("building a TOTP: {e:?}"))
}

/// The `otpauth://` URI an authenticator app scans.
pub fn otpauth_uri(secret: &str, account: &str, issuer: &str) -> anyhow::Result<String> {
    totp(secret, account, issuer)?
        .to_url()
        .map_err(|e| anyhow::anyhow!("writing the otpauth URI: {e:?}"))
}

/// The code an authenticator shows at `time` (epoch seconds); used by tests and nothing else.
pub fn code_at(secret: &str, time: i64) -> anyhow::Result<String> {
    Ok(totp(secret, "x", "x")?.generate(time as u64).to_string())
}

/// The time step whose code `code` is, among the current step and one either side.
pub fn matching_step(secret: &str, code: &str, now: i64) -> anyhow::Result<Option<i64>> {
    let code = code.trim().replace(' ', "");
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let totp = totp(secret, "x", "x")?;
    let current = now / STEP_SECONDS;
    for step in [current - 1, current, current + 1] {
        let expected = totp.generate((step * STEP_SECONDS) as u64).to_string();
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
            return Ok(Some(step));
        }
    }
    Ok(None)
}

/// Whether the member typed a recovery code rather than an authenticator code.
pub fn looks_like_recovery_code(code: &str) -> bool {
    normalize_recovery_code(code).len() == 16
}

fn normalize_recovery_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// What is stored for a recovery code: the SHA-256 of its normalized form. A code carries 80
/// random bits, so a plain digest is as hard to reverse as the code is to guess.
pub fn recovery_code_digest(code: &str) -> String {
    token_digest(&normalize_recovery_code(code))
}

/// Ten new recovery codes as shown to the member (`abcd-efgh-jkmn-pqrs`).
pub fn new_recovery_codes() -> Vec<String> {
    let mut rng = rand::rng();
    (0..RECOVERY_CODES)
        .map(|_| {
            let chars: Vec<char> = (0..16)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                .collect();
            chars
                .chunks(4)
                .map(|group| group.iter().collect::<String>())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect()
}

/// The URI as an inline SVG QR code (no image crate, no data: URL, so the strict CSP holds).
pub fn qr_svg(uri: &str) -> Option<String> {
    use qrcodegen::{QrCode, QrCodeEcc};
    let qr = QrCode::encode_text(uri, QrCodeEcc::Medium).ok()?;
    let border = 4;
    let size = qr.size() + border * 2;
    let mut path = String::new();
    for y in 0..qr.size() {
        for x in 0..qr.size() {
            if qr.get_module(x, y) {
                path.push_str(&format!("M{},{}h1v1h-1z", x + border, y + border));
            }
        }
    }
    Some(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" width=\"220\" \
         height=\"220\" role=\"img\" aria-label=\"QR code of the setup key\" shape-rendering=\"crispEdges\">\
         <rect width=\"100%\" height=\"100%\" fill=\"#fff\"/><path d=\"{path}\" fill=\"#000\"/></svg>"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_their_step_and_drift_by_one_step_at_most() {
        let secret = new_secret();
        let now = 1_800_000_000;
        let code = code_at(&secret, now).unwrap();
        assert_eq!(matching_step(&secret, &code, now).unwrap(), Some(now / 30));
        assert_eq!(
            matching_step(&secret, &code, now + 30).unwrap(),
            Some(now / 30)
        );
        assert_eq!(matching_step(&secret, &code, now + 95).unwrap(), None);
        assert_eq!(matching_step(&secret, "12345", now).unwrap(), None);
    }

    #[test]
    fn the_rfc_6238_vector_holds() {
        // RFC 6238 appendix B, SHA-1 secret "12345678901234567890", T = 59 s: 94287082 (8
        // digits); its last six digits are the six-digit code.
        let secret = Secret::from(b"12345678901234567890".to_vec()).to_base32();
        assert_eq!(code_at(&secret, 59).unwrap(), "287082");
    }

    #[test]
    fn recovery_codes_are_ten_distinct_and_normalize() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        assert_eq!(
            codes.iter().collect::<std::collections::HashSet<_>>().len(),
            10
        );
        assert!(looks_like_recovery_code(&codes[0]));
        assert_eq!(
            recovery_code_digest(&codes[0]),
            recovery_code_digest(&codes[0].to_uppercase().replace('-', " "))
        );
    }

    #[test]
    fn the_qr_code_is_an_inline_svg() {
        let svg = qr_svg("otpauth://totp/Forum:ada?secret=ABC").unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("<path"));
    }
}
