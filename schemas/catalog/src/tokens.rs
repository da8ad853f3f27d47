//! Opaque bearer tokens. Only sha256(token) is stored, so a database leak yields no usable token.

use crate::{Error, Result};
use chrono::{DateTime, Utc};
use jhe_schemas::Role;
use rand::distr::{Alphanumeric, SampleString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// A freshly minted token; `token` is shown once and never stored.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// Who is calling: the user behind a valid token, with their profiles and organization roles.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: i64,
    pub email: String,
    pub is_superuser: bool,
    pub user_type: Option<String>,
    pub practitioner_id: Option<i64>,
    pub patient_id: Option<i64>,
    /// (organization id, role) for every organization the caller is a practitioner member of.
    pub memberships: Vec<(i64, Role)>,
    /// The observation codes this request may read at most (SMART v2 `code` constraints of its token's scopes).
    pub observation_codes: CodeLimit,
}

/// One code a SMART scope constraint allows, as the FHIR `code` search parameter names codes: `system|code`, a
/// `code` in any system (`system` `None`), or every code of `system|` (`code` `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedCode {
    pub system: Option<String>,
    pub code: Option<String>,
}

impl AllowedCode {
    pub fn matches(&self, system: &str, code: &str) -> bool {
        self.system.as_deref().is_none_or(|own| own == system) && self.code.as_deref().is_none_or(|own| own == code)
    }

    /// Whether every code `narrower` matches, `self` matches too.
    pub fn covers(&self, narrower: &AllowedCode) -> bool {
        let part = |own: &Option<String>, other: &Option<String>| own.is_none() || own == other;
        part(&self.system, &narrower.system) && part(&self.code, &narrower.code)
    }
}

/// The observation codes a request may read at most: each entry is the codes one interaction the request needs is
/// granted for (the alternatives of the scopes granting it), and a code must be allowed by every entry. Without
/// entries (the default) there is no limit; an empty entry allows no code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CodeLimit {
    all_of: Vec<Vec<AllowedCode>>,
}

impl CodeLimit {
    /// Also requires one of `alternatives` (none: nothing is allowed any more).
    pub fn and(&mut self, alternatives: Vec<AllowedCode>) {
        self.all_of.push(alternatives);
    }

    pub fn is_limited(&self) -> bool {
        !self.all_of.is_empty()
    }

    /// Whether observations of (`system`, `code`) may be read.
    pub fn allows(&self, system: &str, code: &str) -> bool {
        self.all_of.iter().all(|alternatives| alternatives.iter().any(|allowed| allowed.matches(system, code)))
    }

    /// The entries, every one of which must allow a code.
    pub fn all_of(&self) -> &[Vec<AllowedCode>] {
        &self.all_of
    }
}

impl Caller {
    pub fn is_patient(&self) -> bool {
        self.user_type.as_deref() == Some("patient") || self.patient_id.is_some()
    }

    pub fn is_practitioner(&self) -> bool {
        self.user_type.as_deref() == Some("practitioner") || self.practitioner_id.is_some() || self.is_superuser
    }

    pub fn role_in(&self, organization_id: i64) -> Option<Role> {
        self.memberships.iter().find(|(org, _)| *org == organization_id).map(|(_, role)| *role)
    }

    pub fn organization_ids(&self) -> Vec<i64> {
        self.memberships.iter().map(|(org, _)| *org).collect()
    }
}

pub(crate) fn token_digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// sha256 of a bearer token: the key it is stored under (and cached under by the API's token cache).
pub fn token_sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Issues a bearer token for the user with `email` (used by `jhe token create` and tests).
pub async fn create_token_for_email(pool: &PgPool, email: &str, lifetime: chrono::Duration) -> Result<IssuedToken> {
    let user_id =
        sqlx::query_scalar!("SELECT id FROM users WHERE lower(email) = lower($1)", email).fetch_optional(pool).await?;
    let Some(user_id) = user_id else {
        return Err(Error::NotFound { entity: "user" });
    };
    create_token(pool, Some(user_id), None, "cli", lifetime).await
}

/// Issues a bearer token for a user and/or an OAuth client.
pub async fn create_token(
    pool: &PgPool,
    user_id: Option<i64>,
    client_pk: Option<i64>,
    source: &str,
    lifetime: chrono::Duration,
) -> Result<IssuedToken> {
    let token = Alphanumeric.sample_string(&mut rand::rng(), 40);
    let expires_at = Utc::now() + lifetime;
    sqlx::query!(
        "INSERT INTO access_tokens (token_sha256, user_id, client_pk, source, expires_at) VALUES ($1, $2, $3, $4, $5)",
        token_digest(&token),
        user_id,
        client_pk,
        source,
        expires_at,
    )
    .execute(pool)
    .await?;
    Ok(IssuedToken { token, expires_at })
}

struct CallerRow {
    user_id: i64,
    email: String,
    is_superuser: bool,
    user_type: Option<String>,
    practitioner_id: Option<i64>,
    patient_id: Option<i64>,
    memberships: sqlx::types::Json<Vec<MembershipRow>>,
    expires_at: DateTime<Utc>,
    scope: String,
    client_credentials: bool,
}

/// A valid token's check: who calls, until when the token is valid, and what it was issued for.
#[derive(Debug, Clone)]
pub struct TokenCheck {
    pub caller: Caller,
    pub expires_at: DateTime<Utc>,
    /// the granted scope, space separated (`openid email`, SMART resource scopes, …); empty for CLI tokens
    pub scope: String,
    /// issued by the client-credentials grant (no user: the token acts as its client's owner)
    pub client_credentials: bool,
}

#[derive(Deserialize)]
struct MembershipRow {
    organization_id: i64,
    role: String,
}

/// The caller behind `token`, if the token exists, has not expired and its user is active. A token of a
/// client-credentials client acts as the client's owner.
pub async fn authenticate(pool: &PgPool, token: &str) -> Result<Option<Caller>> {
    Ok(authenticate_digest(pool, &token_sha256(token)).await?.map(|check| check.caller))
}

/// As [`authenticate`], for a token given by its sha256, with the token's expiry (so a cache of the answer can
/// stop trusting it exactly when the token expires) and its scope (SMART scopes narrow what the caller may do).
pub async fn authenticate_digest(pool: &PgPool, digest: &[u8; 32]) -> Result<Option<TokenCheck>> {
    let row = sqlx::query_as!(
        CallerRow,
        r#"SELECT u.id AS user_id, u.email, u.is_superuser, u.user_type,
                pr.id AS "practitioner_id?", pa.id AS "patient_id?",
                COALESCE((SELECT jsonb_agg(jsonb_build_object('organization_id', po.organization_id, 'role', po.role))
                          FROM practitioner_organizations po WHERE po.practitioner_id = pr.id), '[]'::jsonb)
                    AS "memberships!: sqlx::types::Json<Vec<MembershipRow>>",
                t.expires_at, t.scope, t.user_id IS NULL AS "client_credentials!"
         FROM access_tokens t
         LEFT JOIN oauth_clients c ON c.id = t.client_pk
         JOIN users u ON u.id = COALESCE(t.user_id, c.owner_user_id)
         LEFT JOIN practitioners pr ON pr.user_id = u.id
         LEFT JOIN patients pa ON pa.user_id = u.id
         WHERE t.token_sha256 = $1 AND t.expires_at > now() AND u.is_active"#,
        &digest[..],
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| {
        let caller = Caller {
            user_id: row.user_id,
            email: row.email,
            is_superuser: row.is_superuser,
            user_type: row.user_type,
            practitioner_id: row.practitioner_id,
            patient_id: row.patient_id,
            memberships: row
                .memberships
                .0
                .into_iter()
                .filter_map(|m| m.role.parse().ok().map(|role| (m.organization_id, role)))
                .collect(),
            // the API narrows it by the request's scopes
            observation_codes: CodeLimit::default(),
        };
        TokenCheck { caller, expires_at: row.expires_at, scope: row.scope, client_credentials: row.client_credentials }
    }))
}
