//! ID-token signing keys: RS256, generated on first start, stored in Postgres, rotatable. The JWKS publishes
//! every key that signed a token which may still be live.

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
    #[error(transparent)]
    Catalog(#[from] jhe_catalog::Error),
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

/// The key that signs new ID tokens, generated when there is none (first start).
pub(crate) async fn ensure_signing_key(pool: &PgPool) -> Result<jhe_catalog::SigningKey, KeyError> {
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
    jhe_catalog::add_signing_key(pool, &kid, &pem, false).await?;
    tracing::info!(kid, elapsed_ms = started.elapsed().as_millis() as u64, "generated the ID-token signing key");
    jhe_catalog::current_signing_key(pool).await?.ok_or_else(|| KeyError::Generate("the new key is not visible".into()))
}

/// Rotates the ID-token signing key: a new key signs from now on; the old ones stay in the JWKS for the ID-token
/// lifetime so tokens they signed still verify. Returns the new key's kid.
pub async fn rotate_signing_key(pool: &PgPool) -> Result<String, KeyError> {
    let (kid, pem) = generate_key().await?;
    jhe_catalog::add_signing_key(pool, &kid, &pem, true).await?;
    tracing::info!(kid, "rotated the ID-token signing key");
    Ok(kid)
}

/// The public half of a stored key as a JWK.
fn jwk(key: &jhe_catalog::SigningKey) -> Result<Value, KeyError> {
    let private = rsa::PrivateKey::from_pkcs8_pem(&key.private_key_pem).map_err(|e| KeyError::Decode(e.to_string()))?;
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
    ensure_signing_key(&state.pool).await?;
    let keys = jhe_catalog::published_signing_keys(&state.pool, CONFIG.id_token_lifetime).await?;
    let keys = keys.iter().map(jwk).collect::<Result<Vec<_>, _>>()?;
    Ok(axum::Json(json!({ "keys": keys })).into_response())
}

/// Signs `claims` as an RS256 JWT with the current key.
pub(super) async fn sign(pool: &PgPool, claims: &Value) -> Result<String, KeyError> {
    let key = ensure_signing_key(pool).await?;
    let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(key.private_key_pem.as_bytes())
        .map_err(|e| KeyError::Decode(e.to_string()))?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(key.kid);
    jsonwebtoken::encode(&header, claims, &encoding).map_err(|e| KeyError::Sign(e.to_string()))
}

/// `at_hash` (OpenID Connect Core §3.1.3.6): base64url of the left half of sha256(access token).
pub(super) fn at_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(&Sha256::digest(access_token.as_bytes())[..16])
}
