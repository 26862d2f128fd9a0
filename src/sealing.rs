//! Crypto-shredding (R8): the private personal fields are sealed at rest with a key of their
//! subject, and erasing the subject destroys that key, so every copy of those fields (in a
//! backup too) stops opening.
//!
//! - Each subject has a random 256-bit data key, kept in the key store (`store::KeyStore`), a
//!   database of its own beside the main one. The key store holds the data keys wrapped
//!   (XChaCha20-Poly1305) under a key-encryption key derived from the audit key file, so the
//!   key store alone opens nothing and the main database alone opens nothing either.
//! - A sealed value is `s1:` and the URL-safe base64 of a random 24-byte nonce, the ciphertext
//!   and its tag, stored in the column's usual text column. Its associated data names the
//!   table, the column and the subject, so a value copied into another row or column does not
//!   open.
//! - Equality lookups (sign-in by address, intake matching) use a keyed hash
//!   ([`Sealing::lookup`]): HMAC-SHA256 of the normalized value under a key derived from the
//!   audit key, stored as `k1:` and hex.
//!
//! This module is pure: it seals and opens; the store keeps the keys.

use crate::audit::AuditKey;
use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

/// How a sealed value starts. No plain address, IP address or user agent starts with it.
pub const SEALED: &str = "s1:";
/// How a keyed lookup hash starts.
pub const LOOKUP: &str = "k1:";
const NONCE_LEN: usize = 24;

/// Whether a stored value is sealed (rather than plain, from before sealing, or a blank).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED)
}

/// Whether stored bytes (an evidence file) are sealed: they start with [`SEALED`]. No file type
/// that evidence accepts starts so.
pub fn is_sealed_bytes(stored: &[u8]) -> bool {
    stored.starts_with(SEALED.as_bytes())
}

/// A subject's data key, unwrapped. Never stored as it is, never printed.
/// Its bytes are overwritten with zeroes when it is dropped (ASVS 8.3.6).
#[derive(Clone)]
pub struct DataKey([u8; 32]);

impl Drop for DataKey {
    fn drop(&mut self) {
        self.wipe();
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey([redacted])")
    }
}

impl DataKey {
    /// A new random key.
    pub fn random() -> Self {
        let mut key = Self([0u8; 32]);
        rand::rng().fill_bytes(&mut key.0);
        key
    }

    /// Overwrites the key with zeroes; what dropping it does.
    fn wipe(&mut self) {
        self.0.zeroize();
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new_from_slice(&self.0).expect("a data key is 32 bytes")
    }

    /// Seals `plain`, the value of `table.column` of `subject`.
    pub fn seal(&self, place: &str, subject: &str, plain: &str) -> String {
        format!(
            "{SEALED}{}",
            seal_bytes(
                &self.cipher(),
                plain.as_bytes(),
                &value_associated_data(place, subject)
            )
        )
    }

    /// Opens a value sealed by [`DataKey::seal`] for the same place and subject.
    pub fn open(&self, place: &str, subject: &str, stored: &str) -> anyhow::Result<String> {
        let encoded = stored
            .strip_prefix(SEALED)
            .context("the value is not sealed")?;
        let plain = open_bytes(
            &self.cipher(),
            encoded,
            &value_associated_data(place, subject),
        )
        .with_context(|| format!("a sealed {place} of {subject} does not open"))?;
        String::from_utf8(plain).context("an opened value is not text")
    }
}

impl DataKey {
    /// Seals the bytes `plain` of `place` of `subject`: [`SEALED`], the nonce, the ciphertext
    /// and its tag, as bytes (a file is not worth base64 in a binary column).
    pub fn seal_bytes(&self, place: &str, subject: &str, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = value_associated_data(place, subject);
        let sealed = self
            .cipher()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .expect("sealing a file in memory cannot fail");
        let mut out = Vec::with_capacity(SEALED.len() + NONCE_LEN + sealed.len());
        out.extend_from_slice(SEALED.as_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens bytes sealed by [`DataKey::seal_bytes`] for the same place and subject.
    pub fn open_bytes(&self, place: &str, subject: &str, stored: &[u8]) -> anyhow::Result<Vec<u8>> {
        let rest = stored
            .strip_prefix(SEALED.as_bytes())
            .context("the bytes are not sealed")?;
        anyhow::ensure!(rest.len() > NONCE_LEN, "sealed bytes are too short");
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).expect("the nonce is 24 bytes");
        let aad = value_associated_data(place, subject);
        self.cipher()
            .decrypt(
                &nonce,
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| anyhow::anyhow!("sealed {place} of {subject} does not open"))
    }
}

/// The keys derived from the audit key file: the key-encryption key of the key store and the
/// key of the lookup hashes.
#[derive(Clone)]
pub struct Sealing {
    wrap: XChaCha20Poly1305,
    lookup: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Sealing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealing([redacted])")
    }
}

impl Sealing {
    pub fn new(audit_key: &AuditKey) -> Self {
        let wrap = audit_key.derive("sealing.key-encryption v1");
        Self {
            wrap: XChaCha20Poly1305::new_from_slice(&wrap).expect("the derived key is 32 bytes"),
            lookup: audit_key.derive("sealing.lookup v1"),
        }
    }

    /// The data key as the key store keeps it, bound to its subject.
    pub fn wrap(&self, subject: &str, key: &DataKey) -> String {
        seal_bytes(&self.wrap, &key.0, &key_associated_data(subject))
    }

    /// The data key of `subject` from what the key store keeps.
    pub fn unwrap(&self, subject: &str, wrapped: &str) -> anyhow::Result<DataKey> {
        let bytes =
            open_bytes(&self.wrap, wrapped, &key_associated_data(subject)).with_context(|| {
                format!("the key of {subject} does not open: another audit key file?")
            })?;
        let bytes = Zeroizing::new(bytes);
        let mut key = DataKey([0u8; 32]);
        anyhow::ensure!(
            bytes.len() == key.0.len(),
            "the key of {subject} is not 32 bytes"
        );
        key.0.copy_from_slice(&bytes);
        Ok(key)
    }

    /// The keyed hash that stands for `normalized` in equality lookups (`users.email_lookup`,
    /// the erasure ledger of addresses): `k1:` and 64 hex digits.
    pub fn lookup(&self, normalized: &str) -> String {
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&self.lookup)
            .expect("HMAC takes any key");
        mac.update(normalized.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(LOOKUP.len() + 64);
        out.push_str(LOOKUP);
        for byte in digest {
            out.push_str(&format!("{byte:02x}"));
        }
        out
    }
}

/// The subject whose key seals a member's fields.
pub fn member(user_id: i64) -> String {
    format!("user:{user_id}")
}

/// The subject whose key seals a privacy-request submission's correspondence: evidence that
/// erasure keeps, so it cannot die with the member's key; the retention sweep destroys it with
/// the submission's records.
pub fn submission(submission_id: i64) -> String {
    format!("submission:{submission_id}")
}

/// The subject whose key seals the private fields of one row that belongs to no member
/// (`inventory::SEALED_BY_ROW`): `prefix:` and the value naming the row.
pub fn row(prefix: &str, key: &str) -> String {
    format!("{prefix}:{key}")
}

/// What the keyed hash of a sealed value of `place` stands for: an address in lower case (as
/// `users.email_lookup`), or a provider account's id as it is, set apart from addresses.
pub fn lookup_text(place: &str, value: &str) -> String {
    if place == "social_links.subject" {
        format!("provider account {value}")
    } else {
        value.to_lowercase()
    }
}

fn value_associated_data(place: &str, subject: &str) -> Vec<u8> {
    format!("covenant sealed {place} of {subject}").into_bytes()
}

fn key_associated_data(subject: &str) -> Vec<u8> {
    format!("covenant data key of {subject}").into_bytes()
}

fn seal_bytes(cipher: &XChaCha20Poly1305, plain: &[u8], aad: &[u8]) -> String {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    let sealed = cipher
        .encrypt(&XNonce::from(nonce), Payload { msg: plain, aad })
        .expect("sealing a short value cannot fail");
    let mut bytes = nonce.to_vec();
    bytes.extend_from_slice(&sealed);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn open_bytes(cipher: &XChaCha20Poly1305, encoded: &str, aad: &[u8]) -> anyhow::Result<Vec<u8>> {
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .context("a sealed value is not base64")?;
    anyhow::ensure!(bytes.len() > NONCE_LEN, "a sealed value is too short");
    let (nonce, sealed) = bytes.split_at(NONCE_LEN);
    let nonce = XNonce::try_from(nonce).expect("the nonce is 24 bytes");
    cipher
        .decrypt(&nonce, Payload { msg: sealed, aad })
        .map_err(|_| anyhow::anyhow!("the seal does not open"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data key does not outlive its use in memory: dropping it writes zeroes over it.
    /// Proves: R8
    #[test]
    fn a_data_key_is_zeroed_when_dropped() {
        let mut key = DataKey::random();
        assert_ne!(key.0, [0u8; 32], "a random key");
        let sealed = key.seal("users.email", "user:1", "someone@example.org");
        key.wipe();
        assert_eq!(key.0, [0u8; 32]);
        assert!(
            key.open("users.email", "user:1", &sealed).is_err(),
            "a wiped key opens nothing"
        );
    }

    #[test]
    fn a_sealed_value_opens_only_in_its_place_and_for_its_subject() {
        let key = DataKey::random();
        let sealed = key.seal("users.email", "user:1", "ann@example.org");
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("ann"));
        assert_eq!(
            key.open("users.email", "user:1", &sealed).unwrap(),
            "ann@example.org"
        );
        assert!(key.open("users.email", "user:2", &sealed).is_err());
        assert!(key.open("sessions.ip", "user:1", &sealed).is_err());
        assert!(
            DataKey::random()
                .open("users.email", "user:1", &sealed)
                .is_err()
        );
    }

    #[test]
    fn a_wrapped_key_needs_the_audit_key_and_its_subject() {
        let sealing = Sealing::new(&AuditKey::from_bytes(vec![3; 32]));
        let key = DataKey::random();
        let wrapped = sealing.wrap("user:1", &key);
        let sealed = key.seal("users.email", "user:1", "x@example.org");
        let back = sealing.unwrap("user:1", &wrapped).unwrap();
        assert_eq!(
            back.open("users.email", "user:1", &sealed).unwrap(),
            "x@example.org"
        );
        assert!(sealing.unwrap("user:2", &wrapped).is_err());
        let other = Sealing::new(&AuditKey::from_bytes(vec![4; 32]));
        assert!(other.unwrap("user:1", &wrapped).is_err());
    }

    #[test]
    fn sealed_bytes_open_only_in_their_place_and_for_their_subject() {
        let key = DataKey::random();
        let file = b"%PDF-1.7 power of attorney".to_vec();
        let sealed = key.seal_bytes("privacy_request_evidence.content", "submission:4", &file);
        assert!(is_sealed_bytes(&sealed) && !is_sealed_bytes(&file));
        assert!(!sealed.windows(4).any(|w| w == b"%PDF"));
        let place = "privacy_request_evidence.content";
        assert_eq!(
            key.open_bytes(place, "submission:4", &sealed).unwrap(),
            file
        );
        assert!(key.open_bytes(place, "submission:5", &sealed).is_err());
        assert!(
            DataKey::random()
                .open_bytes(place, "submission:4", &sealed)
                .is_err()
        );
    }

    #[test]
    fn lookups_are_keyed_and_stable() {
        let a = Sealing::new(&AuditKey::from_bytes(vec![3; 32]));
        let b = Sealing::new(&AuditKey::from_bytes(vec![4; 32]));
        assert_eq!(a.lookup("ann@example.org"), a.lookup("ann@example.org"));
        assert_ne!(a.lookup("ann@example.org"), b.lookup("ann@example.org"));
        assert!(!a.lookup("ann@example.org").contains("ann"));
        assert_eq!(a.lookup("x").len(), 3 + 64);
    }
}
