//! Password hashing: argon2id for jhe's own hashes; Django's `pbkdf2_sha256$…` hashes are verified so that a
//! user table imported from a reference Exchange keeps working (and is re-hashed on the next login).

use crate::{Error, Result};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use subtle::ConstantTimeEq;

/// Hashes `password` with argon2id and a random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| Error::PasswordHash(e.to_string()))
}

/// Whether `password` matches `stored` (argon2 PHC or Django PBKDF2). An empty or unknown hash never matches.
pub fn verify_password(password: &str, stored: &str) -> bool {
    if let Some(django) = stored.strip_prefix("pbkdf2_sha256$") {
        return verify_django_pbkdf2(password, django);
    }
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Whether `stored` should be replaced by an argon2 hash after a successful login.
pub fn needs_rehash(stored: &str) -> bool {
    !stored.starts_with("$argon2")
}

/// `iterations$salt$base64(hash)`, as Django's `PBKDF2PasswordHasher` writes it.
fn verify_django_pbkdf2(password: &str, rest: &str) -> bool {
    let mut parts = rest.splitn(3, '$');
    let (Some(iterations), Some(salt), Some(expected)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(iterations) = iterations.parse::<u32>() else {
        return false;
    };
    // bound the work an imported row can demand (Django 5.2 uses 1,000,000)
    if iterations == 0 || iterations > 10_000_000 {
        return false;
    }
    let Ok(expected) = STANDARD.decode(expected) else {
        return false;
    };
    if expected.is_empty() || expected.len() > 64 {
        return false;
    }
    let mut derived = vec![0u8; expected.len()];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), salt.as_bytes(), iterations, &mut derived);
    derived.ct_eq(&expected).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_round_trip() {
        let hash = hash_password("Jhe1234!").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("Jhe1234!", &hash));
        assert!(!verify_password("jhe1234!", &hash));
        assert!(!needs_rehash(&hash));
    }

    #[test]
    fn django_pbkdf2_hash_verifies() {
        // what Django writes for make_password("letmein", salt="seasalt") at 260000 iterations
        let stored = "pbkdf2_sha256$260000$seasalt$94sH6HDeICZwZaQqwNA7vXnS8L/xUKdiLFYi1eDblE8=";
        assert!(verify_password("letmein", stored));
        assert!(!verify_password("letmeout", stored));
        assert!(needs_rehash(stored));
    }

    #[test]
    fn malformed_hashes_never_match() {
        for stored in ["", "pbkdf2_sha256$", "pbkdf2_sha256$x$salt$aGFzaA==", "pbkdf2_sha256$0$s$aGFzaA==", "plain"] {
            assert!(!verify_password("anything", stored), "{stored}");
        }
    }
}
