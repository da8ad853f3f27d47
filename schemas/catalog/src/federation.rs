//! Federated login state (docs/identity.md "Federated login"): sign-ins in progress at an upstream OpenID Connect
//! provider, and the links from upstream accounts (issuer, subject) to jhe users; also the links from EHR
//! practitioners (issuer, Practitioner id) to jhe users that the SMART token exchange follows. Policy (which user
//! may sign in, the matching rule) lives in the `api` crate; this module makes each step atomic.

use crate::Result;
use crate::tokens::token_digest;
use chrono::{Duration, Utc};
use sqlx::PgPool;

/// A sign-in about to be sent to the upstream provider.
#[derive(Debug, Clone)]
pub struct NewOidcLoginState<'a> {
    /// the `state` parameter sent upstream (stored as sha256)
    pub state: &'a str,
    /// the value of the browser-binding cookie (stored as sha256)
    pub browser: &'a str,
    pub issuer: &'a str,
    pub nonce: &'a str,
    pub pkce_verifier: &'a str,
    /// where the browser goes once signed in (a path on this site)
    pub next: &'a str,
    pub lifetime: Duration,
}

/// A sign-in in progress, as the callback finds it.
#[derive(Clone)]
pub struct OidcLoginState {
    pub issuer: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub next: String,
}

impl std::fmt::Debug for OidcLoginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcLoginState").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

/// Stores a sign-in in progress (and drops the expired ones on the way).
pub async fn create_oidc_login_state(pool: &PgPool, new: &NewOidcLoginState<'_>) -> Result<()> {
    sqlx::query!("DELETE FROM oidc_login_states WHERE expires_at < now()").execute(pool).await?;
    sqlx::query!(
        "INSERT INTO oidc_login_states (state_sha256, browser_sha256, issuer, nonce, pkce_verifier, next, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        token_digest(new.state),
        token_digest(new.browser),
        new.issuer,
        new.nonce,
        new.pkce_verifier,
        new.next,
        Utc::now() + new.lifetime,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Takes (deletes and returns) the live sign-in with this `state`, if it was started by the browser holding
/// `browser`. A state presented by another browser stays, so a stolen callback URL cannot spend it either.
pub async fn take_oidc_login_state(pool: &PgPool, state: &str, browser: &str) -> Result<Option<OidcLoginState>> {
    Ok(sqlx::query_as!(
        OidcLoginState,
        "DELETE FROM oidc_login_states
         WHERE state_sha256 = $1 AND browser_sha256 = $2 AND expires_at > now()
         RETURNING issuer, nonce, pkce_verifier, next",
        token_digest(state),
        token_digest(browser),
    )
    .fetch_optional(pool)
    .await?)
}

/// A jhe user as federated login sees them.
#[derive(Debug, Clone)]
pub struct FederatedUser {
    pub id: i64,
    pub email: String,
    pub is_active: bool,
    /// a practitioner (or superuser) without a patient profile: the only kind of user federated login signs in
    pub is_practitioner: bool,
}

/// The user linked to the upstream account (issuer, subject).
pub async fn find_linked_user(pool: &PgPool, issuer: &str, subject: &str) -> Result<Option<FederatedUser>> {
    Ok(sqlx::query_as!(
        FederatedUser,
        r#"SELECT u.id, u.email, u.is_active,
                  ((u.user_type = 'practitioner' OR u.is_superuser
                    OR EXISTS (SELECT 1 FROM practitioners p WHERE p.user_id = u.id))
                   AND u.user_type IS DISTINCT FROM 'patient'
                   AND NOT EXISTS (SELECT 1 FROM patients pa WHERE pa.user_id = u.id)) AS "is_practitioner!"
           FROM federated_identities f JOIN users u ON u.id = f.user_id
           WHERE f.issuer = $1 AND f.subject = $2"#,
        issuer,
        subject,
    )
    .fetch_optional(pool)
    .await?)
}

/// The user with this email (case-insensitive), linked or not.
pub async fn find_user_for_federation(pool: &PgPool, email: &str) -> Result<Option<FederatedUser>> {
    Ok(sqlx::query_as!(
        FederatedUser,
        r#"SELECT u.id, u.email, u.is_active,
                  ((u.user_type = 'practitioner' OR u.is_superuser
                    OR EXISTS (SELECT 1 FROM practitioners p WHERE p.user_id = u.id))
                   AND u.user_type IS DISTINCT FROM 'patient'
                   AND NOT EXISTS (SELECT 1 FROM patients pa WHERE pa.user_id = u.id)) AS "is_practitioner!"
           FROM users u WHERE lower(u.email) = lower($1)"#,
        email.trim(),
    )
    .fetch_optional(pool)
    .await?)
}

/// What linking an upstream account to a user did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkOutcome {
    Linked,
    /// the user is already linked to another account of this issuer (the link is kept)
    UserLinkedElsewhere,
}

/// Links (issuer, subject) to `user_id`, unless the user already has a link to another account of this issuer.
/// The same pair linked concurrently to the same user is fine; to another user, the first one wins.
pub async fn link_federated_identity(
    pool: &PgPool,
    issuer: &str,
    subject: &str,
    user_id: i64,
    email: &str,
) -> Result<LinkOutcome> {
    let inserted = sqlx::query!(
        "INSERT INTO federated_identities (issuer, subject, user_id, email, last_login)
         VALUES ($1, $2, $3, $4, now())
         ON CONFLICT DO NOTHING",
        issuer,
        subject,
        user_id,
        email,
    )
    .execute(pool)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(LinkOutcome::Linked);
    }
    // a conflict: either this very link exists already (a concurrent first sign-in), or the user or the upstream
    // account is linked to someone else
    let same = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM federated_identities WHERE issuer = $1 AND subject = $2 AND user_id = $3)
           AS "same!""#,
        issuer,
        subject,
        user_id,
    )
    .fetch_one(pool)
    .await?;
    Ok(if same { LinkOutcome::Linked } else { LinkOutcome::UserLinkedElsewhere })
}

/// Records a federated sign-in through an existing link.
pub async fn touch_federated_identity(pool: &PgPool, issuer: &str, subject: &str) -> Result<()> {
    sqlx::query!(
        "UPDATE federated_identities SET last_login = now() WHERE issuer = $1 AND subject = $2",
        issuer,
        subject,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// The email of an active user and whether it is verified (`email_verified` of jhe's own ID tokens and userinfo).
pub async fn active_user_email_verified(pool: &PgPool, user_id: i64) -> Result<Option<(String, bool)>> {
    Ok(sqlx::query!("SELECT email, email_is_verified FROM users WHERE id = $1 AND is_active", user_id)
        .fetch_optional(pool)
        .await?
        .map(|row| (row.email, row.email_is_verified)))
}

/// The active practitioner user linked to the EHR practitioner `practitioner_id` of `issuer` (the SMART token
/// exchange, §7.6: the id its ID token's `fhirUser` names). The issuer is part of the key, so an id names a user
/// only for the EHR it was registered for; a trailing slash of the issuer is ignored.
pub async fn ehr_practitioner_user(pool: &PgPool, issuer: &str, practitioner_id: &str) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar!(
        "SELECT u.id FROM ehr_practitioner_links l JOIN users u ON u.id = l.user_id
         WHERE l.issuer = $1 AND l.practitioner_id = $2 AND u.is_active
           AND EXISTS (SELECT 1 FROM practitioners p WHERE p.user_id = u.id)",
        issuer.trim_end_matches('/'),
        practitioner_id,
    )
    .fetch_optional(pool)
    .await?)
}
