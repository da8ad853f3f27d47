//! The ID-token signing keys at rest: sealed with the server secret (`JHE_SECRET_KEY`) by XChaCha20-Poly1305, with a
//! random 24-byte nonce per row and the key's kid as associated data, so a sealed key cannot be moved to another
//! row. A sealed row is `enc:v1:` followed by base64(nonce ‖ ciphertext ‖ tag). A row without that prefix is a
//! plaintext PKCS#8 PEM, written while no secret was configured; the next start with a secret seals it.

use super::KeyError;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use std::sync::Arc;

/// The variable of the secret that seals the keys.
const SECRET_VARIABLE: &str = "JHE_SECRET_KEY";
/// The variable of the secret being replaced, which only opens keys (they are sealed again with the new one).
const PREVIOUS_SECRET_VARIABLE: &str = "JHE_SECRET_KEY_PREVIOUS";
/// The format marker of a sealed key: version 1 is XChaCha20-Poly1305 with the kid as associated data.
const SEALED_PREFIX: &str = "enc:v1:";
const SECRET_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;

/// How a stored key was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenedWith {
    /// It was stored as plaintext PEM.
    Plaintext,
    /// It was sealed with the current secret.
    Secret,
    /// It was sealed with the previous secret.
    PreviousSecret,
}

/// The server secret that seals the stored signing keys (`JHE_SECRET_KEY`) and, while it is being changed, the one
/// it replaces (`JHE_SECRET_KEY_PREVIOUS`, which only opens). Without a secret, keys are stored as plaintext PEM.
#[derive(Clone, Default)]
pub struct ServerSecret {
    current: Option<Arc<XChaCha20Poly1305>>,
    previous: Option<Arc<XChaCha20Poly1305>>,
}

impl std::fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never print the secret, only whether it is set
        f.debug_struct("ServerSecret")
            .field("set", &self.current.is_some())
            .field("previous_set", &self.previous.is_some())
            .finish()
    }
}

/// A secret's 32 bytes from base64 (standard or URL-safe alphabet, padded or not).
fn parse_secret(variable: &'static str, text: &str) -> Result<Arc<XChaCha20Poly1305>, KeyError> {
    let text = text.trim();
    let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .ok_or(KeyError::SecretSetting { variable, problem: "is not base64" })?;
    if bytes.len() != SECRET_BYTES {
        return Err(KeyError::SecretSetting { variable, problem: "must be 32 bytes" });
    }
    let cipher = XChaCha20Poly1305::new_from_slice(&bytes)
        .map_err(|_| KeyError::SecretSetting { variable, problem: "must be 32 bytes" })?;
    Ok(Arc::new(cipher))
}

impl ServerSecret {
    /// No secret: keys are stored as plaintext PEM.
    pub fn none() -> Self {
        Self::default()
    }

    /// The secret from the settings' values of `JHE_SECRET_KEY` and `JHE_SECRET_KEY_PREVIOUS` (empty counts as
    /// unset). Each is 32 random bytes in base64 (`openssl rand -base64 32`).
    pub fn from_settings(current: Option<&str>, previous: Option<&str>) -> Result<Self, KeyError> {
        fn set(value: Option<&str>) -> Option<&str> {
            value.filter(|text| !text.trim().is_empty())
        }
        let current = set(current).map(|text| parse_secret(SECRET_VARIABLE, text)).transpose()?;
        let previous = set(previous).map(|text| parse_secret(PREVIOUS_SECRET_VARIABLE, text)).transpose()?;
        if current.is_none() && previous.is_some() {
            return Err(KeyError::SecretSetting {
                variable: PREVIOUS_SECRET_VARIABLE,
                problem: "is set without JHE_SECRET_KEY (the previous secret only opens keys for the new one)",
            });
        }
        Ok(Self { current, previous })
    }

    /// Whether keys are sealed (`JHE_SECRET_KEY` is set).
    pub fn is_set(&self) -> bool {
        self.current.is_some()
    }

    /// Whether a previous secret is configured.
    pub(crate) fn has_previous(&self) -> bool {
        self.previous.is_some()
    }

    /// The stored form of the private key `pem` of `kid`: sealed with the secret, or the PEM itself without one.
    pub(crate) fn seal(&self, kid: &str, pem: &str) -> Result<String, KeyError> {
        let Some(cipher) = &self.current else {
            return Ok(pem.to_owned());
        };
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|e| KeyError::Seal(e.to_string()))?;
        let sealed = cipher
            .encrypt(&XNonce::from(nonce), Payload { msg: pem.as_bytes(), aad: kid.as_bytes() })
            .map_err(|_| KeyError::Seal("encryption failed".into()))?;
        let mut envelope = Vec::with_capacity(NONCE_BYTES + sealed.len());
        envelope.extend_from_slice(&nonce);
        envelope.extend_from_slice(&sealed);
        Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(envelope)))
    }

    /// The PEM of the stored key `stored` of `kid`, and how it was opened.
    pub(crate) fn open(&self, kid: &str, stored: &str) -> Result<(String, OpenedWith), KeyError> {
        let Some(encoded) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok((stored.to_owned(), OpenedWith::Plaintext));
        };
        let Some(current) = &self.current else {
            return Err(KeyError::SecretMissing { kid: kid.to_owned() });
        };
        let malformed = || KeyError::Decode(format!("the sealed key {kid} is not a valid {SEALED_PREFIX} value"));
        let envelope = STANDARD.decode(encoded).map_err(|_| malformed())?;
        if envelope.len() <= NONCE_BYTES {
            return Err(malformed());
        }
        let (nonce, sealed) = envelope.split_at(NONCE_BYTES);
        let nonce = XNonce::try_from(nonce).map_err(|_| malformed())?;
        let payload = || Payload { msg: sealed, aad: kid.as_bytes() };
        let opened = match current.decrypt(&nonce, payload()) {
            Ok(pem) => (pem, OpenedWith::Secret),
            Err(_) => match self.previous.as_ref().map(|previous| previous.decrypt(&nonce, payload())) {
                Some(Ok(pem)) => (pem, OpenedWith::PreviousSecret),
                _ => return Err(KeyError::SecretWrong { kid: kid.to_owned() }),
            },
        };
        let pem = String::from_utf8(opened.0).map_err(|_| malformed())?;
        Ok((pem, opened.1))
    }

    /// The form `stored` should be replaced by: a plaintext key once a secret is set, and a key of the previous
    /// secret sealed with the current one; `None` when it is already as it should be.
    pub(crate) fn reseal(&self, kid: &str, stored: &str) -> Result<Option<String>, KeyError> {
        let (pem, opened_with) = self.open(kid, stored)?;
        match opened_with {
            OpenedWith::Plaintext if self.is_set() => Ok(Some(self.seal(kid, &pem)?)),
            OpenedWith::PreviousSecret => Ok(Some(self.seal(kid, &pem)?)),
            OpenedWith::Plaintext | OpenedWith::Secret => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";

    fn secret_text(byte: u8) -> String {
        STANDARD.encode([byte; SECRET_BYTES])
    }

    fn secret(current: u8, previous: Option<u8>) -> ServerSecret {
        let previous = previous.map(secret_text);
        ServerSecret::from_settings(Some(&secret_text(current)), previous.as_deref()).unwrap()
    }

    #[test]
    fn sealed_keys_carry_the_format_prefix_and_no_pem() {
        let sealed = secret(1, None).seal("kid-a", PEM).unwrap();
        assert!(sealed.starts_with("enc:v1:"), "{sealed}");
        assert!(!sealed.contains("PRIVATE KEY"));
        let envelope = STANDARD.decode(sealed.trim_start_matches("enc:v1:")).unwrap();
        assert_eq!(envelope.len(), NONCE_BYTES + PEM.len() + 16, "nonce, ciphertext and tag");
    }

    #[test]
    fn a_sealed_key_opens_with_its_secret_and_kid_only() {
        let key = secret(1, None);
        let sealed = key.seal("kid-a", PEM).unwrap();
        assert_eq!(key.open("kid-a", &sealed).unwrap(), (PEM.to_owned(), OpenedWith::Secret));
        assert!(matches!(key.open("kid-b", &sealed), Err(KeyError::SecretWrong { .. })), "bound to its kid");
        assert!(matches!(secret(2, None).open("kid-a", &sealed), Err(KeyError::SecretWrong { .. })));
        assert!(matches!(ServerSecret::none().open("kid-a", &sealed), Err(KeyError::SecretMissing { .. })));
    }

    #[test]
    fn every_seal_uses_a_new_nonce() {
        let key = secret(1, None);
        assert_ne!(key.seal("kid-a", PEM).unwrap(), key.seal("kid-a", PEM).unwrap());
    }

    #[test]
    fn tampered_or_truncated_envelopes_are_refused() {
        let key = secret(1, None);
        let sealed = key.seal("kid-a", PEM).unwrap();
        let mut envelope = STANDARD.decode(sealed.trim_start_matches("enc:v1:")).unwrap();
        let last = envelope.len() - 1;
        envelope[last] ^= 1;
        let tampered = format!("enc:v1:{}", STANDARD.encode(&envelope));
        assert!(matches!(key.open("kid-a", &tampered), Err(KeyError::SecretWrong { .. })));
        for broken in ["enc:v1:", "enc:v1:!!!", "enc:v1:AAAA"] {
            assert!(matches!(key.open("kid-a", broken), Err(KeyError::Decode(_))), "{broken}");
        }
    }

    #[test]
    fn plaintext_rows_stay_readable_and_are_sealed_once_a_secret_is_set() {
        assert_eq!(ServerSecret::none().open("kid-a", PEM).unwrap(), (PEM.to_owned(), OpenedWith::Plaintext));
        assert_eq!(ServerSecret::none().seal("kid-a", PEM).unwrap(), PEM, "no secret: stored as today");
        assert_eq!(ServerSecret::none().reseal("kid-a", PEM).unwrap(), None);
        let key = secret(1, None);
        let sealed = key.reseal("kid-a", PEM).unwrap().expect("plaintext is sealed");
        assert_eq!(key.open("kid-a", &sealed).unwrap().0, PEM);
        assert_eq!(key.reseal("kid-a", &sealed).unwrap(), None, "already sealed with the secret");
    }

    #[test]
    fn keys_of_the_previous_secret_are_sealed_again_with_the_new_one() {
        let old = secret(1, None);
        let sealed = old.seal("kid-a", PEM).unwrap();
        let changing = secret(2, Some(1));
        assert_eq!(changing.open("kid-a", &sealed).unwrap().1, OpenedWith::PreviousSecret);
        let resealed = changing.reseal("kid-a", &sealed).unwrap().expect("sealed again");
        assert_eq!(secret(2, None).open("kid-a", &resealed).unwrap(), (PEM.to_owned(), OpenedWith::Secret));
        assert!(old.open("kid-a", &resealed).is_err());
    }

    #[test]
    fn secrets_must_be_32_bytes_of_base64_and_are_never_printed() {
        let url_safe = URL_SAFE_NO_PAD.encode([0xfb_u8; SECRET_BYTES]);
        assert!(ServerSecret::from_settings(Some(&url_safe), None).unwrap().is_set());
        assert!(!ServerSecret::from_settings(Some("  "), None).unwrap().is_set(), "empty is unset");
        for bad in ["not base64 at all!", &STANDARD.encode([1u8; 16])] {
            let error = ServerSecret::from_settings(Some(bad), None).unwrap_err().to_string();
            assert!(error.contains("JHE_SECRET_KEY"), "{error}");
        }
        let error = ServerSecret::from_settings(None, Some(&secret_text(1))).unwrap_err().to_string();
        assert!(error.contains("JHE_SECRET_KEY_PREVIOUS"), "{error}");
        let shown = format!("{:?}", secret(7, Some(8)));
        assert!(!shown.contains(&secret_text(7)) && !shown.contains("7, 7"), "{shown}");
    }
}
