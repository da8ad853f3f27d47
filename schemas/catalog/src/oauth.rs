//! The OAuth 2 / OpenID Connect provider's state (jhe-compat §7): ID-token signing keys, login sessions,
//! authorization codes (grants), refresh tokens and the access tokens issued from them. Codes, sessions and
//! tokens are random strings shown once; only their sha256 is stored. Policy (PKCE, client checks, which error
//! to answer) lives in the `api` crate; this module only makes each state change atomic.

use crate::tokens::token_digest;
use crate::{IssuedToken, Result};
use chrono::{DateTime, Duration, Utc};
use rand::distr::{Alphanumeric, SampleString};
use sqlx::{PgConnection, PgPool};

/// A random token of `length` alphanumerics (about 5.95 bits each).
pub fn random_token(length: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), length)
}

/// An RS256 key that signs (or signed) ID tokens.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    /// The private key as stored: PKCS#8 PEM, or sealed with the server secret (the `api` crate opens it).
    pub private_key_pem: String,
    pub created: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never print the private key
        f.debug_struct("SigningKey").field("kid", &self.kid).field("retired_at", &self.retired_at).finish()
    }
}

/// The key that signs new ID tokens: the newest one not retired.
pub async fn current_signing_key(pool: &PgPool) -> Result<Option<SigningKey>> {
    Ok(sqlx::query_as!(
        SigningKey,
        "SELECT kid, private_key_pem, created, retired_at FROM oauth_signing_keys
         WHERE retired_at IS NULL ORDER BY created DESC, id DESC LIMIT 1"
    )
    .fetch_optional(pool)
    .await?)
}

/// The keys whose public halves the JWKS publishes: the active ones and those retired less than `grace` ago (the
/// ID-token lifetime, so every token they signed can still be verified).
pub async fn published_signing_keys(pool: &PgPool, grace: Duration) -> Result<Vec<SigningKey>> {
    let since = Utc::now() - grace;
    Ok(sqlx::query_as!(
        SigningKey,
        "SELECT kid, private_key_pem, created, retired_at FROM oauth_signing_keys
         WHERE retired_at IS NULL OR retired_at > $1 ORDER BY created DESC, id DESC",
        since,
    )
    .fetch_all(pool)
    .await?)
}

/// Every stored signing key, retired ones included (to seal them all at rest).
pub async fn all_signing_keys(pool: &PgPool) -> Result<Vec<SigningKey>> {
    Ok(sqlx::query_as!(
        SigningKey,
        "SELECT kid, private_key_pem, created, retired_at FROM oauth_signing_keys ORDER BY created, id"
    )
    .fetch_all(pool)
    .await?)
}

/// Replaces the stored form of key `kid` with `replacement` if it is still `stored` (another process may have
/// replaced it meanwhile); returns whether it did.
pub async fn replace_stored_signing_key(pool: &PgPool, kid: &str, stored: &str, replacement: &str) -> Result<bool> {
    let replaced = sqlx::query!(
        "UPDATE oauth_signing_keys SET private_key_pem = $3 WHERE kid = $1 AND private_key_pem = $2",
        kid,
        stored,
        replacement,
    )
    .execute(pool)
    .await?;
    Ok(replaced.rows_affected() == 1)
}

/// Stores a new signing key; with `retire_others` (rotation) every older key stops signing in the same
/// transaction.
pub async fn add_signing_key(pool: &PgPool, kid: &str, private_key_pem: &str, retire_others: bool) -> Result<()> {
    let mut tx = pool.begin().await?;
    if retire_others {
        sqlx::query!("UPDATE oauth_signing_keys SET retired_at = now() WHERE retired_at IS NULL")
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query!("INSERT INTO oauth_signing_keys (kid, private_key_pem) VALUES ($1, $2)", kid, private_key_pem)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// An OAuth client as the provider needs it (secret hash included; never serialized).
#[derive(Clone)]
pub struct OAuthClient {
    pub id: i64,
    pub client_id: String,
    pub client_secret_hash: String,
    pub name: String,
    pub client_type: String,
    pub grant_type: String,
    pub redirect_uris: String,
    pub skip_authorization: bool,
    pub owner_user_id: Option<i64>,
}

impl std::fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClient").field("id", &self.id).field("client_id", &self.client_id).finish_non_exhaustive()
    }
}

impl OAuthClient {
    pub fn is_confidential(&self) -> bool {
        self.client_type == "confidential"
    }

    /// Whether `uri` is one of the registered redirect URIs (space or newline separated, exact match).
    pub fn allows_redirect(&self, uri: &str) -> bool {
        self.redirect_uris.split_whitespace().any(|allowed| allowed == uri)
    }
}

pub async fn find_oauth_client(pool: &PgPool, client_id: &str) -> Result<Option<OAuthClient>> {
    Ok(sqlx::query_as!(
        OAuthClient,
        "SELECT id, client_id, client_secret_hash, name, client_type, grant_type, redirect_uris, skip_authorization,
                owner_user_id
         FROM oauth_clients WHERE client_id = $1",
        client_id,
    )
    .fetch_optional(pool)
    .await?)
}

/// What the login form checks a password against.
#[derive(Clone)]
pub struct LoginUser {
    pub id: i64,
    pub email: String,
    pub password: String,
    pub is_active: bool,
}

impl std::fmt::Debug for LoginUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginUser").field("id", &self.id).finish_non_exhaustive()
    }
}

pub async fn find_login_user(pool: &PgPool, email: &str) -> Result<Option<LoginUser>> {
    Ok(sqlx::query_as!(
        LoginUser,
        "SELECT id, email, password, is_active FROM users WHERE lower(email) = lower($1)",
        email.trim(),
    )
    .fetch_optional(pool)
    .await?)
}

/// Records a successful login; `rehashed` replaces a password hash of an older scheme.
pub async fn record_login(pool: &PgPool, user_id: i64, rehashed: Option<&str>) -> Result<()> {
    sqlx::query!(
        "UPDATE users SET last_login = now(), password = COALESCE($2, password) WHERE id = $1",
        user_id,
        rehashed,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// The email of an active user.
pub async fn active_user_email(pool: &PgPool, user_id: i64) -> Result<Option<String>> {
    Ok(sqlx::query_scalar!("SELECT email FROM users WHERE id = $1 AND is_active", user_id).fetch_optional(pool).await?)
}

/// A login session (the cookie holds its random id).
#[derive(Debug, Clone)]
pub struct LoginSession {
    pub id: i64,
    pub csrf_token: String,
    pub user_id: Option<i64>,
    pub auth_time: Option<DateTime<Utc>>,
}

/// Starts a session, signed in when `user_id` is given; returns the cookie value.
pub async fn create_login_session(
    pool: &PgPool,
    csrf_token: &str,
    user_id: Option<i64>,
    lifetime: Duration,
) -> Result<String> {
    let session = random_token(40);
    let auth_time = user_id.map(|_| Utc::now());
    sqlx::query!(
        "INSERT INTO oauth_sessions (session_sha256, csrf_token, user_id, auth_time, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
        token_digest(&session),
        csrf_token,
        user_id,
        auth_time,
        Utc::now() + lifetime,
    )
    .execute(pool)
    .await?;
    Ok(session)
}

/// The live session behind a cookie value.
pub async fn find_login_session(pool: &PgPool, session: &str) -> Result<Option<LoginSession>> {
    Ok(sqlx::query_as!(
        LoginSession,
        "SELECT s.id, s.csrf_token, s.user_id, s.auth_time FROM oauth_sessions s
         LEFT JOIN users u ON u.id = s.user_id
         WHERE s.session_sha256 = $1 AND s.expires_at > now() AND (s.user_id IS NULL OR u.is_active)",
        token_digest(session),
    )
    .fetch_optional(pool)
    .await?)
}

/// Ends a session (and, on the way, every expired one).
pub async fn delete_login_session(pool: &PgPool, id: i64) -> Result<()> {
    sqlx::query!("DELETE FROM oauth_sessions WHERE id = $1 OR expires_at < now()", id).execute(pool).await?;
    Ok(())
}

/// A new authorization code.
#[derive(Debug, Clone)]
pub struct NewGrant<'a> {
    pub client_pk: i64,
    pub user_id: i64,
    pub redirect_uri: &'a str,
    pub scope: &'a str,
    pub code_challenge: &'a str,
    pub nonce: Option<&'a str>,
    pub auth_time: DateTime<Utc>,
    pub lifetime: Duration,
}

/// Stores an authorization code and returns it.
pub async fn create_grant(pool: &PgPool, grant: &NewGrant<'_>) -> Result<String> {
    let code = random_token(30);
    // codes never exchanged are kept a day past expiry (long enough to answer a late exchange), then dropped;
    // exchanged ones stay as the family of their tokens
    sqlx::query!("DELETE FROM oauth_grants WHERE used_at IS NULL AND expires_at < now() - interval '1 day'")
        .execute(pool)
        .await?;
    sqlx::query!(
        "INSERT INTO oauth_grants (code_sha256, client_pk, user_id, redirect_uri, scope, code_challenge,
                                   code_challenge_method, nonce, auth_time, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'S256', $7, $8, $9)",
        token_digest(&code),
        grant.client_pk,
        grant.user_id,
        grant.redirect_uri,
        grant.scope,
        grant.code_challenge,
        grant.nonce,
        grant.auth_time,
        Utc::now() + grant.lifetime,
    )
    .execute(pool)
    .await?;
    Ok(code)
}

/// An authorization code as presented at the token endpoint.
#[derive(Debug, Clone)]
pub struct Grant {
    pub id: i64,
    pub client_pk: i64,
    pub user_id: i64,
    pub redirect_uri: String,
    pub scope: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub auth_time: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// when it was exchanged (`Some` = presenting it now is a reuse)
    pub used_before: Option<DateTime<Utc>>,
}

/// The code as stored, without using it: the token endpoint checks the client, redirect URI and PKCE verifier
/// before anything changes, so a presentation that fails them leaves the code to its rightful client. `None` for
/// an unknown code.
pub async fn find_grant(pool: &PgPool, code: &str) -> Result<Option<Grant>> {
    Ok(sqlx::query_as!(
        Grant,
        r#"SELECT id, client_pk, user_id, redirect_uri, scope, code_challenge, nonce, auth_time, expires_at,
                  used_at AS used_before
           FROM oauth_grants WHERE code_sha256 = $1"#,
        token_digest(code),
    )
    .fetch_optional(pool)
    .await?)
}

/// Uses a checked code: marks it used and issues its tokens (the family `grant.grant_id`) in one transaction.
/// `None` when the code was used already, also by a concurrent exchange (the conditional update waits for that
/// exchange to commit and then matches nothing): nothing is issued, and the caller treats it as a reuse.
pub async fn redeem_grant(pool: &PgPool, grant: &TokenGrant<'_>) -> Result<Option<IssuedTokens>> {
    let Some(grant_id) = grant.grant_id else {
        return Ok(None);
    };
    let mut tx = pool.begin().await?;
    let used = sqlx::query!("UPDATE oauth_grants SET used_at = now() WHERE id = $1 AND used_at IS NULL", grant_id)
        .execute(&mut *tx)
        .await?;
    if used.rows_affected() == 0 {
        return Ok(None);
    }
    let tokens = issue_tokens_in(&mut tx, grant).await?;
    tx.commit().await?;
    Ok(Some(tokens))
}

/// Revokes every token descending from a grant: its access tokens are deleted and its refresh tokens revoked.
pub async fn revoke_grant_family(pool: &PgPool, grant_id: i64) -> Result<()> {
    let mut tx = pool.begin().await?;
    revoke_family(&mut tx, grant_id).await?;
    tx.commit().await?;
    Ok(())
}

async fn revoke_family(conn: &mut PgConnection, grant_id: i64) -> Result<()> {
    sqlx::query!(
        "UPDATE oauth_refresh_tokens SET revoked_at = COALESCE(revoked_at, now()) WHERE grant_id = $1",
        grant_id
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!("DELETE FROM access_tokens WHERE grant_id = $1", grant_id).execute(&mut *conn).await?;
    Ok(())
}

/// Tokens issued at the token endpoint.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    pub access: IssuedToken,
    pub refresh: Option<String>,
}

/// What a new access token is for.
#[derive(Debug, Clone, Copy)]
pub struct TokenGrant<'a> {
    pub user_id: Option<i64>,
    pub client_pk: i64,
    pub scope: &'a str,
    /// cli, authorization_code, refresh_token, client_credentials, invitation
    pub source: &'a str,
    pub grant_id: Option<i64>,
    pub lifetime: Duration,
}

async fn insert_access_token(conn: &mut PgConnection, grant: &TokenGrant<'_>) -> Result<(i64, IssuedToken)> {
    let token = random_token(40);
    let expires_at = Utc::now() + grant.lifetime;
    let id = sqlx::query_scalar!(
        "INSERT INTO access_tokens (token_sha256, user_id, client_pk, scope, source, expires_at, grant_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        token_digest(&token),
        grant.user_id,
        grant.client_pk,
        grant.scope,
        grant.source,
        expires_at,
        grant.grant_id,
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok((id, IssuedToken { token, expires_at }))
}

async fn insert_refresh_token(
    conn: &mut PgConnection,
    grant_id: i64,
    grant: &TokenGrant<'_>,
    user_id: i64,
    access_token_id: i64,
) -> Result<String> {
    let refresh = random_token(40);
    sqlx::query!(
        "INSERT INTO oauth_refresh_tokens (token_sha256, grant_id, client_pk, user_id, scope, access_token_id)
         VALUES ($1, $2, $3, $4, $5, $6)",
        token_digest(&refresh),
        grant_id,
        grant.client_pk,
        user_id,
        grant.scope,
        access_token_id,
    )
    .execute(&mut *conn)
    .await?;
    Ok(refresh)
}

/// Issues an access token, and a refresh token when the grant has a user and a family (`grant_id`).
pub async fn issue_tokens(pool: &PgPool, grant: &TokenGrant<'_>) -> Result<IssuedTokens> {
    let mut tx = pool.begin().await?;
    let tokens = issue_tokens_in(&mut tx, grant).await?;
    tx.commit().await?;
    Ok(tokens)
}

async fn issue_tokens_in(conn: &mut PgConnection, grant: &TokenGrant<'_>) -> Result<IssuedTokens> {
    let (access_id, access) = insert_access_token(&mut *conn, grant).await?;
    let refresh = match (grant.grant_id, grant.user_id) {
        (Some(grant_id), Some(user_id)) => {
            Some(insert_refresh_token(&mut *conn, grant_id, grant, user_id, access_id).await?)
        }
        _ => None,
    };
    Ok(IssuedTokens { access, refresh })
}

/// The outcome of presenting a refresh token.
#[derive(Debug, Clone)]
pub enum RefreshOutcome {
    /// unknown, or issued to another client (nothing changed)
    Invalid,
    /// already rotated or revoked: the whole family has now been revoked
    Reused,
    /// the requested scope is not within the granted one (nothing changed; the refresh token stays usable)
    InvalidScope(String),
    /// rotated: the old refresh token and its access token are revoked, new ones issued
    Rotated { tokens: IssuedTokens, user_id: i64, scope: String, grant_id: i64, auth_time: DateTime<Utc> },
}

/// Rotates a refresh token for `client_pk`; a token presented a second time revokes its family (RFC 6819 §5.2.2.3).
/// `scope_for` maps the scope the token was granted to the scope of the new tokens (RFC 6749 §6: equal or
/// narrower), or refuses with a message; the policy is the caller's.
pub async fn rotate_refresh_token(
    pool: &PgPool,
    refresh: &str,
    client_pk: i64,
    lifetime: Duration,
    scope_for: impl FnOnce(&str) -> std::result::Result<String, String>,
) -> Result<RefreshOutcome> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query!(
        "SELECT r.id, r.grant_id, r.client_pk, r.user_id, r.scope, r.access_token_id, r.revoked_at, g.auth_time
         FROM oauth_refresh_tokens r JOIN oauth_grants g ON g.id = r.grant_id
         JOIN users u ON u.id = r.user_id AND u.is_active
         WHERE r.token_sha256 = $1 FOR UPDATE OF r",
        token_digest(refresh),
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(RefreshOutcome::Invalid);
    };
    if row.client_pk != client_pk {
        return Ok(RefreshOutcome::Invalid);
    }
    if row.revoked_at.is_some() {
        revoke_family(&mut tx, row.grant_id).await?;
        tx.commit().await?;
        return Ok(RefreshOutcome::Reused);
    }
    let scope = match scope_for(&row.scope) {
        Ok(scope) => scope,
        Err(message) => return Ok(RefreshOutcome::InvalidScope(message)),
    };
    sqlx::query!("UPDATE oauth_refresh_tokens SET revoked_at = now() WHERE id = $1", row.id).execute(&mut *tx).await?;
    if let Some(access_id) = row.access_token_id {
        sqlx::query!("DELETE FROM access_tokens WHERE id = $1", access_id).execute(&mut *tx).await?;
    }
    let grant = TokenGrant {
        user_id: Some(row.user_id),
        client_pk,
        scope: &scope,
        source: "refresh_token",
        grant_id: Some(row.grant_id),
        lifetime,
    };
    let (access_id, access) = insert_access_token(&mut tx, &grant).await?;
    let new_refresh = insert_refresh_token(&mut tx, row.grant_id, &grant, row.user_id, access_id).await?;
    tx.commit().await?;
    Ok(RefreshOutcome::Rotated {
        tokens: IssuedTokens { access, refresh: Some(new_refresh) },
        user_id: row.user_id,
        scope,
        grant_id: row.grant_id,
        auth_time: row.auth_time,
    })
}

/// Revokes a token (RFC 7009) if it was issued to `client_pk`: an access token is deleted; a refresh token is
/// revoked together with the access token issued with it. Unknown tokens change nothing.
pub async fn revoke_token(pool: &PgPool, token: &str, client_pk: i64) -> Result<()> {
    let digest = token_digest(token);
    let mut tx = pool.begin().await?;
    sqlx::query!("DELETE FROM access_tokens WHERE token_sha256 = $1 AND client_pk = $2", digest, client_pk)
        .execute(&mut *tx)
        .await?;
    let access_id = sqlx::query_scalar!(
        "UPDATE oauth_refresh_tokens SET revoked_at = COALESCE(revoked_at, now())
         WHERE token_sha256 = $1 AND client_pk = $2 RETURNING access_token_id",
        digest,
        client_pk,
    )
    .fetch_optional(&mut *tx)
    .await?
    .flatten();
    if let Some(access_id) = access_id {
        sqlx::query!("DELETE FROM access_tokens WHERE id = $1", access_id).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// A live access token as introspection and userinfo describe it. `user_id` is the acting user (a
/// client-credentials token acts as its client's owner).
#[derive(Debug, Clone)]
pub struct AccessTokenInfo {
    pub user_id: i64,
    pub email: String,
    pub client_id: Option<String>,
    pub scope: String,
    pub created: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The live (unexpired, unrevoked, active user) access token behind `token`.
pub async fn access_token_info(pool: &PgPool, token: &str) -> Result<Option<AccessTokenInfo>> {
    Ok(sqlx::query_as!(
        AccessTokenInfo,
        r#"SELECT u.id AS user_id, u.email, c.client_id AS "client_id?", t.scope, t.created, t.expires_at
           FROM access_tokens t
           LEFT JOIN oauth_clients c ON c.id = t.client_pk
           JOIN users u ON u.id = COALESCE(t.user_id, c.owner_user_id)
           WHERE t.token_sha256 = $1 AND t.expires_at > now() AND u.is_active"#,
        token_digest(token),
    )
    .fetch_optional(pool)
    .await?)
}

/// The outcome of redeeming a patient invitation (jhe-compat §7.4).
#[derive(Debug, Clone)]
pub enum Redemption {
    NotFound,
    /// issued longer ago than `auth.patient.invitation_expiration_days` (now marked expired), or expired before
    Expired,
    /// redeemed longer ago than the retry window, or reissued
    Used {
        reissued: bool,
    },
    Cancelled,
    /// the invitation's patient has no user account to sign in
    NoUser,
    /// redeemed (now or again within the retry window): the app may sign the patient in
    Redeemed {
        user_id: i64,
        client_pk: i64,
        client_id: String,
    },
}

/// Redeems the invitation whose token hashes to `token_hash`. An issued invitation becomes redeemed; a redeemed one
/// is accepted again within `auth.patient.invitation_redemption_window_hours` of its last redemption (each retry moves
/// the window, as the reference's re-save does).
pub async fn redeem_invitation(pool: &PgPool, token_hash: &str) -> Result<Redemption> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query!(
        r#"SELECT i.id, i.status, p.user_id AS "user_id?", i.client_pk, c.client_id,
                  i.last_updated < now() - make_interval(days => COALESCE((SELECT value_int FROM settings
                      WHERE key = 'auth.patient.invitation_expiration_days' AND value_type = 'int'), 7)::int)
                      AS "too_old!",
                  i.last_updated < now() - make_interval(hours => COALESCE((SELECT value_int FROM settings
                      WHERE key = 'auth.patient.invitation_redemption_window_hours' AND value_type = 'int'), 12)::int)
                      AS "window_closed!"
           FROM patient_invitations i JOIN patients p ON p.id = i.patient_id JOIN oauth_clients c ON c.id = i.client_pk
           WHERE i.token_hash = $1 FOR UPDATE OF i"#,
        token_hash,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(Redemption::NotFound);
    };
    let outcome = match row.status.as_str() {
        "issued" if row.too_old => {
            sqlx::query!(
                "UPDATE patient_invitations SET status = 'expired', last_updated = now() WHERE id = $1",
                row.id
            )
            .execute(&mut *tx)
            .await?;
            Redemption::Expired
        }
        "redeemed" if row.window_closed => Redemption::Used { reissued: false },
        "issued" | "redeemed" => match row.user_id {
            None => Redemption::NoUser,
            Some(user_id) => {
                sqlx::query!(
                    "UPDATE patient_invitations SET status = 'redeemed', last_updated = now() WHERE id = $1",
                    row.id
                )
                .execute(&mut *tx)
                .await?;
                // an earlier redemption's code that was never exchanged stops working (the reference deletes the
                // user's grants for the client); used codes stay, they name the families of live tokens
                sqlx::query!(
                    "DELETE FROM oauth_grants WHERE user_id = $1 AND client_pk = $2 AND used_at IS NULL",
                    user_id,
                    row.client_pk
                )
                .execute(&mut *tx)
                .await?;
                sqlx::query!("UPDATE users SET last_login = now() WHERE id = $1", user_id).execute(&mut *tx).await?;
                Redemption::Redeemed { user_id, client_pk: row.client_pk, client_id: row.client_id }
            }
        },
        "expired" => Redemption::Expired,
        "cancelled" => Redemption::Cancelled,
        _ => Redemption::Used { reissued: true },
    };
    tx.commit().await?;
    Ok(outcome)
}
