//! ID-token signing keys: RS256, generated on first start, stored in Postgres (sealed with `JHE_SECRET_KEY` when it
//! is set, see `sealing`), rotatable. The JWKS publishes every key that signed a token which may still be live.

mod sealing;

pub use sealing::ServerSecret;

use super::CONFIG;
use crate::error::OAuthError;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

static GENERATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// 2048 bits: what DOT's deployments use and what every RP verifies quickly.
const KEY_BITS: usize = 2048;

/// Why a key operation failed (the key material never appears in the message).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("RSA key generation failed: {0}")]
    Generate(String),
    #[error("a stored signing key cannot be read: {0}")]
    Decode(String),
    #[error("signing failed: {0}")]
    Sign(String),
    #[error("sealing a signing key failed: {0}")]
    Seal(String),
    #[error("{variable} {problem}: set it to 32 random bytes in base64 (e.g. `openssl rand -base64 32`)")]
    SecretSetting { variable: &'static str, problem: &'static str },
    #[error(
        "the ID-token signing key {kid} is stored encrypted, but JHE_SECRET_KEY is not set: start the server with the \
         JHE_SECRET_KEY that encrypted it"
    )]
    SecretMissing { kid: String },
    #[error(
        "the ID-token signing key {kid} cannot be decrypted with JHE_SECRET_KEY (nor JHE_SECRET_KEY_PREVIOUS): it was \
         encrypted with another secret. Start with that secret; to change it, set the new one as JHE_SECRET_KEY and \
         the old one as JHE_SECRET_KEY_PREVIOUS"
    )]
    SecretWrong { kid: String },
    #[error(transparent)]
    Catalog(#[from] jhe_catalog::Error),
}

impl KeyError {
    /// Whether the configured `JHE_SECRET_KEY` cannot open the stored keys (a server must not start that way).
    pub fn is_secret_mismatch(&self) -> bool {
        matches!(self, KeyError::SecretMissing { .. } | KeyError::SecretWrong { .. })
    }
}

impl From<KeyError> for OAuthError {
    fn from(error: KeyError) -> Self {
        match error {
            KeyError::Catalog(error) => error.into(),
            other => {
                tracing::error!(error = %other, "ID-token signing key");
                OAuthError::server_error()
            }
        }
    }
}

/// A new key as (kid, PKCS#8 PEM). The kid is derived from the modulus, so it names the key wherever it is seen.
async fn generate_key() -> Result<(String, String), KeyError> {
    tokio::task::spawn_blocking(|| {
        let key =
            rsa::PrivateKey::new(&mut getrandom::SysRng, KEY_BITS).map_err(|e| KeyError::Generate(e.to_string()))?;
        let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(key.n_bytes())[..12]);
        let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| KeyError::Generate(e.to_string()))?;
        Ok((kid, pem.to_string()))
    })
    .await
    .map_err(|e| KeyError::Generate(e.to_string()))?
}

/// Seals the stored keys that are not sealed with the current secret: plaintext rows once `JHE_SECRET_KEY` is set,
/// and rows of `JHE_SECRET_KEY_PREVIOUS`. Fails, changing nothing further, on a row the secrets cannot open.
/// Returns how many rows were sealed.
async fn seal_stored_keys(pool: &PgPool, secret: &ServerSecret) -> Result<usize, KeyError> {
    let mut sealed = 0;
    for key in jhe_catalog::all_signing_keys(pool).await? {
        if let Some(replacement) = secret.reseal(&key.kid, &key.private_key_pem)? {
            // compare-and-set: a process starting at the same time may have sealed it already
            if jhe_catalog::replace_stored_signing_key(pool, &key.kid, &key.private_key_pem, &replacement).await? {
                sealed += 1;
            }
        }
    }
    Ok(sealed)
}

/// Readies the signing keys when a server starts: warns when they are stored unencrypted, seals the stored ones
/// with `JHE_SECRET_KEY` (plaintext rows, rows of the previous secret), and makes the first key if there is none.
/// A secret that cannot open a stored key is an error the server must not start with (`is_secret_mismatch`).
pub(crate) async fn prepare_signing_keys(pool: &PgPool, secret: &ServerSecret) -> Result<(), KeyError> {
    if !secret.is_set() {
        tracing::warn!(
            "JHE_SECRET_KEY is not set: the ID-token signing keys are stored unencrypted in Postgres (set it to 32 \
             random bytes in base64, e.g. `openssl rand -base64 32`)"
        );
    }
    let sealed = seal_stored_keys(pool, secret).await?;
    if sealed > 0 {
        tracing::info!(keys = sealed, "encrypted the stored ID-token signing keys with JHE_SECRET_KEY");
    }
    if secret.has_previous() {
        tracing::info!("every stored signing key is encrypted with JHE_SECRET_KEY; JHE_SECRET_KEY_PREVIOUS can go");
    }
    ensure_signing_key(pool, secret).await?;
    Ok(())
}

/// The key that signs new ID tokens, generated when there is none (first start).
pub(crate) async fn ensure_signing_key(
    pool: &PgPool,
    secret: &ServerSecret,
) -> Result<jhe_catalog::SigningKey, KeyError> {
    if let Some(key) = jhe_catalog::current_signing_key(pool).await? {
        return Ok(key);
    }
    // one generation per process (the API and metrics listeners start together); a second process starting at the
    // same moment may still add a key of its own, which is harmless: both stay valid and the newest signs
    let _generating = GENERATING.lock().await;
    if let Some(key) = jhe_catalog::current_signing_key(pool).await? {
        return Ok(key);
    }
    let started = std::time::Instant::now();
    let (kid, pem) = generate_key().await?;
    jhe_catalog::add_signing_key(pool, &kid, &secret.seal(&kid, &pem)?, false).await?;
    tracing::info!(kid, elapsed_ms = started.elapsed().as_millis() as u64, "generated the ID-token signing key");
    jhe_catalog::current_signing_key(pool).await?.ok_or_else(|| KeyError::Generate("the new key is not visible".into()))
}

/// Rotates the ID-token signing key: a new key signs from now on; the old ones stay in the JWKS for the ID-token
/// lifetime so tokens they signed still verify. The stored keys are sealed with `secret` first (as at a start), so
/// a secret that cannot open them adds no key. Returns the new key's kid.
pub async fn rotate_signing_key(pool: &PgPool, secret: &ServerSecret) -> Result<String, KeyError> {
    seal_stored_keys(pool, secret).await?;
    let (kid, pem) = generate_key().await?;
    jhe_catalog::add_signing_key(pool, &kid, &secret.seal(&kid, &pem)?, true).await?;
    tracing::info!(kid, "rotated the ID-token signing key");
    Ok(kid)
}

/// The public half of a stored key as a JWK.
fn jwk(key: &jhe_catalog::SigningKey, secret: &ServerSecret) -> Result<Value, KeyError> {
    let (pem, _) = secret.open(&key.kid, &key.private_key_pem)?;
    let private = rsa::PrivateKey::from_pkcs8_pem(&pem).map_err(|e| KeyError::Decode(e.to_string()))?;
    Ok(json!({
        "kty": "RSA",
        "alg": "RS256",
        "use": "sig",
        "kid": key.kid,
        "n": URL_SAFE_NO_PAD.encode(private.n_bytes()),
        "e": URL_SAFE_NO_PAD.encode(private.e_bytes()),
    }))
}

/// `GET /o/.well-known/jwks.json`.
pub(super) async fn jwks(State(state): State<crate::AppState>) -> Result<Response, OAuthError> {
    ensure_signing_key(&state.pool, &state.server_secret).await?;
    let keys = jhe_catalog::published_signing_keys(&state.pool, CONFIG.id_token_lifetime).await?;
    let keys = keys.iter().map(|key| jwk(key, &state.server_secret)).collect::<Result<Vec<_>, _>>()?;
    Ok(axum::Json(json!({ "keys": keys })).into_response())
}

/// Signs `claims` as an RS256 JWT with the current key.
pub(super) async fn sign(pool: &PgPool, secret: &ServerSecret, claims: &Value) -> Result<String, KeyError> {
    let key = ensure_signing_key(pool, secret).await?;
    let (pem, _) = secret.open(&key.kid, &key.private_key_pem)?;
    let encoding =
        jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| KeyError::Decode(e.to_string()))?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(key.kid);
    jsonwebtoken::encode(&header, claims, &encoding).map_err(|e| KeyError::Sign(e.to_string()))
}

/// `at_hash` (OpenID Connect Core §3.1.3.6): base64url of the left half of sha256(access token).
pub(super) fn at_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(&Sha256::digest(access_token.as_bytes())[..16])
}
