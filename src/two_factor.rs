//! 2-step verification: TOTP (RFC 6238: SHA-1, six digits, 30-second steps, one step of clock
//! drift either way) and single-use recovery codes. Pure functions; the store remembers the last
//! step used, so a code cannot be replayed within its window.
//!
//! The TOTP secret is sealed at rest ([`SecretSeal`]): someone who reads the database alone (a
//! dump, a stolen backup) cannot compute a member's codes.

use crate::accounts::token_digest;
use crate::audit::AuditKey;
use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::{Rng, RngExt};
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Builder, Secret, Totp};

pub const STEP_SECONDS: i64 = 30;
pub const RECOVERY_CODES: usize = 10;
const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// A new random secret (160 bits), base32 as authenticator apps take it.
pub fn new_secret() -> String {
    Secret::generate().to_base32()
}

/// How a sealed secret starts in the `two_factor.secret` column. A base32 secret never contains
/// `:`, so a value without this prefix is a plain secret stored before sealing existed.
const SEALED_V1: &str = "v1:";
const NONCE_LEN: usize = 24;

/// Seals and opens TOTP secrets with XChaCha20-Poly1305. The key is derived from the audit key
/// file (which every node shares and which never enters the database) under its own label, and
/// the member's id is the associated data, so a sealed secret copied into another member's row
/// does not open.
#[derive(Clone)]
pub struct SecretSeal(XChaCha20Poly1305);

impl std::fmt::Debug for SecretSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretSeal([redacted])")
    }
}

impl SecretSeal {
    pub fn new(audit_key: &AuditKey) -> Self {
        let key = audit_key.derive("two_factor.secret sealing v1");
        Self(XChaCha20Poly1305::new_from_slice(&key).expect("the derived key is 32 bytes"))
    }

    /// What to store for `secret` of member `user_id`: `v1:` and the URL-safe base64 of a
    /// random 24-byte nonce followed by the ciphertext and its tag.
    pub fn seal(&self, user_id: i64, secret: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .0
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: &associated_data(user_id),
                },
            )
            .expect("sealing a short secret cannot fail");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{SEALED_V1}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The secret of member `user_id` from what is stored: a sealed value must open with this
    /// key for this member; a plain value (from before sealing) is taken as it is, and
    /// [`is_sealed`] tells the caller to seal it.
    pub fn open(&self, user_id: i64, stored: &str) -> anyhow::Result<String> {
        let Some(encoded) = stored.strip_prefix(SEALED_V1) else {
            return Ok(stored.to_string());
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(encoded)
            .context("a sealed 2-step secret is not base64")?;
        anyhow::ensure!(
            bytes.len() > NONCE_LEN,
            "a sealed 2-step secret is too short"
        );
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).expect("the nonce is 24 bytes");
        let secret = self
            .0
            .decrypt(
                &nonce,
                Payload {
                    msg: sealed,
                    aad: &associated_data(user_id),
                },
            )
            .map_err(|_| {
                anyhow::anyhow!(
                    "the 2-step secret of member {user_id} does not open: another key file, \
                     or it was not sealed for this member"
                )
            })?;
        String::from_utf8(secret).context("an opened 2-step secret is not text")
    }
}

/// Whether a stored secret is sealed (rather than plain, from before sealing).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_V1)
}

fn associated_data(user_id: i64) -> Vec<u8> {
    format!("covenant two_factor.secret user {user_id}").into_bytes()
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
    fn a_sealed_secret_opens_only_for_its_member_and_with_its_key() {
        let seal = SecretSeal::new(&AuditKey::from_bytes(vec![7; 32]));
        let secret = new_secret();
        let stored = seal.seal(42, &secret);
        assert!(is_sealed(&stored) && !stored.contains(&secret));
        assert_ne!(
            stored,
            seal.seal(42, &secret),
            "each sealing takes a fresh nonce"
        );
        assert_eq!(seal.open(42, &stored).unwrap(), secret);
        assert!(seal.open(43, &stored).is_err(), "bound to the member");
        let other = SecretSeal::new(&AuditKey::from_bytes(vec![8; 32]));
        assert!(other.open(42, &stored).is_err(), "bound to the key file");
        let mut tampered = stored.clone();
        tampered.pop();
        tampered.push(if stored.ends_with('A') { 'B' } else { 'A' });
        assert!(seal.open(42, &tampered).is_err());
        assert!(seal.open(42, "v1:").is_err() && seal.open(42, "v1:***").is_err());
        // A plain secret from before sealing still opens, and is recognised as plain.
        assert_eq!(seal.open(42, &secret).unwrap(), secret);
        assert!(!is_sealed(&secret));
    }

    #[test]
    fn the_qr_code_is_an_inline_svg() {
        let svg = qr_svg("otpauth://totp/Forum:ada?secret=ABC").unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("<path"));
    }
}
