//! Browser accounts (docs/identity.md "Accounts"): signup, mailed one-time tokens (email verification, password
//! reset), password changes that end sessions and revoke tokens, and the failed-login counter behind the
//! temporary lockout. Policy (what a valid password is, limits, what to answer) lives in the `api` crate; this
//! module makes each state change atomic.

use crate::oauth::random_token;
use crate::tokens::token_digest;
use crate::{Error, Result};
use chrono::{DateTime, Duration, Utc};
use sqlx::{PgConnection, PgPool};

/// Why a mailed token exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountTokenPurpose {
    VerifyEmail,
    PasswordReset,
}

impl AccountTokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountTokenPurpose::VerifyEmail => "verify_email",
            AccountTokenPurpose::PasswordReset => "password_reset",
        }
    }
}

/// An organization membership a new practitioner gets from the `auth.default_orgs` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultMembership {
    pub organization_id: i64,
    pub role: String,
}

/// Parses `auth.default_orgs` (jhe-compat §3.1: `"<org_id>:<role>;…"`). An entry without a role is a viewer
/// membership; blank entries are skipped. The message of an error names the entry that is wrong.
pub fn parse_default_orgs(text: &str) -> std::result::Result<Vec<DefaultMembership>, String> {
    let mut memberships = Vec::new();
    for entry in text.split(';').map(str::trim).filter(|entry| !entry.is_empty()) {
        let (id, role) = match entry.split_once(':') {
            Some((id, role)) => (id.trim(), role.trim()),
            None => (entry, "viewer"),
        };
        let organization_id = id.parse::<i64>().map_err(|_| format!("`{entry}`: `{id}` is not an organization id"))?;
        if !matches!(role, "viewer" | "member" | "manager") {
            return Err(format!("`{entry}`: the role must be viewer, member or manager"));
        }
        if !memberships.iter().any(|m: &DefaultMembership| m.organization_id == organization_id) {
            memberships.push(DefaultMembership { organization_id, role: role.to_owned() });
        }
    }
    Ok(memberships)
}

/// Creates a practitioner account from the signup form: the user (password already hashed), the practitioner
/// profile and the default memberships of organizations that exist. A taken email (in any case) is a
/// [`Error::Conflict`], also when two signups race.
pub async fn signup_practitioner(
    pool: &PgPool,
    email: &str,
    password_hash: &str,
    memberships: &[DefaultMembership],
) -> Result<i64> {
    let mut tx = pool.begin().await?;
    // ON CONFLICT on the lower(email) index: a concurrent signup with the same email gets no row, not an error
    let id = sqlx::query_scalar!(
        r#"INSERT INTO users (email, password, user_type) VALUES ($1, $2, 'practitioner')
           ON CONFLICT ((lower(email))) DO NOTHING RETURNING id AS "id!""#,
        email,
        password_hash,
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| Error::Conflict("A user is already registered with this email address.".to_owned()))?;
    let practitioner = sqlx::query_scalar!(
        "INSERT INTO practitioners (user_id, name_family, name_given) VALUES ($1, '', '') RETURNING id",
        id
    )
    .fetch_one(&mut *tx)
    .await?;
    for membership in memberships {
        // an organization deleted since the setting was written is skipped, not an error for the new user
        sqlx::query!(
            "INSERT INTO practitioner_organizations (practitioner_id, organization_id, role)
             SELECT $1, o.id, $3 FROM organizations o WHERE o.id = $2
             ON CONFLICT (practitioner_id, organization_id) DO NOTHING",
            practitioner,
            membership.organization_id,
            membership.role,
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(id)
}

/// Stores a new mailed token for `user_id` and returns it (shown once, in the mail).
pub async fn create_account_token(
    pool: &PgPool,
    user_id: i64,
    purpose: AccountTokenPurpose,
    email: &str,
    lifetime: Duration,
) -> Result<String> {
    let token = random_token(43);
    // tokens past their expiry are useless; drop them on the way (a day later, so a late click still reads
    // "expired" rather than "unknown" for a while — both answer the same page anyway)
    sqlx::query!("DELETE FROM account_tokens WHERE expires_at < now() - interval '1 day'").execute(pool).await?;
    sqlx::query!(
        "INSERT INTO account_tokens (token_sha256, user_id, purpose, email, expires_at) VALUES ($1, $2, $3, $4, $5)",
        token_digest(&token),
        user_id,
        purpose.as_str(),
        email,
        Utc::now() + lifetime,
    )
    .execute(pool)
    .await?;
    Ok(token)
}

/// The address a mailed token was sent to, while the token can still be used: unused, unexpired, for an active
/// user whose email is still that address.
pub async fn account_token_email(pool: &PgPool, token: &str, purpose: AccountTokenPurpose) -> Result<Option<String>> {
    Ok(sqlx::query_scalar!(
        "SELECT t.email FROM account_tokens t JOIN users u ON u.id = t.user_id
         WHERE t.token_sha256 = $1 AND t.purpose = $2 AND t.used_at IS NULL AND t.expires_at > now()
           AND u.is_active AND lower(u.email) = lower(t.email)",
        token_digest(token),
        purpose.as_str(),
    )
    .fetch_optional(pool)
    .await?)
}

/// Uses a token once: marks it used and returns its user, or `None` when it is unknown, used, expired or its
/// user is inactive or changed email.
async fn use_account_token(conn: &mut PgConnection, token: &str, purpose: AccountTokenPurpose) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar!(
        "UPDATE account_tokens t SET used_at = now() FROM users u
         WHERE u.id = t.user_id AND t.token_sha256 = $1 AND t.purpose = $2 AND t.used_at IS NULL
           AND t.expires_at > now() AND u.is_active AND lower(u.email) = lower(t.email)
         RETURNING t.user_id",
        token_digest(token),
        purpose.as_str(),
    )
    .fetch_optional(&mut *conn)
    .await?)
}

/// Follows an email-verification link: marks the user's email verified. `None` for an unusable token.
pub async fn verify_email_with_token(pool: &PgPool, token: &str) -> Result<Option<i64>> {
    let mut tx = pool.begin().await?;
    let Some(user_id) = use_account_token(&mut tx, token, AccountTokenPurpose::VerifyEmail).await? else {
        return Ok(None);
    };
    sqlx::query!("UPDATE users SET email_is_verified = TRUE WHERE id = $1", user_id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(Some(user_id))
}

/// Revokes every credential that a password protected: all refresh tokens of the user and all access tokens
/// issued to them (login flows, invitations, `jhe token create`), except the access token whose sha256 is
/// `keep_token`. Practitioner API keys (client credentials, no user on their tokens) are separate secrets and stay.
async fn revoke_user_tokens(conn: &mut PgConnection, user_id: i64, keep_token: Option<&[u8]>) -> Result<()> {
    sqlx::query!(
        "UPDATE oauth_refresh_tokens SET revoked_at = COALESCE(revoked_at, now()) WHERE user_id = $1",
        user_id
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "DELETE FROM access_tokens WHERE user_id = $1 AND ($2::bytea IS NULL OR token_sha256 <> $2)",
        user_id,
        keep_token,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Spends the user's outstanding password-reset links (they were meant for the password being replaced).
async fn spend_reset_links(conn: &mut PgConnection, user_id: i64) -> Result<()> {
    sqlx::query!(
        "UPDATE account_tokens SET used_at = now() WHERE user_id = $1 AND purpose = 'password_reset' AND used_at IS NULL",
        user_id
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Sets a new password from a reset link (the hash is made by the caller): the token and every other reset link
/// of the user stop working, every session ends and the user's tokens are revoked. The email counts as verified
/// (the link reached it). `None` for an unusable token.
pub async fn reset_password_with_token(pool: &PgPool, token: &str, password_hash: &str) -> Result<Option<i64>> {
    let mut tx = pool.begin().await?;
    let Some(user_id) = use_account_token(&mut tx, token, AccountTokenPurpose::PasswordReset).await? else {
        return Ok(None);
    };
    sqlx::query!("UPDATE users SET password = $2, email_is_verified = TRUE WHERE id = $1", user_id, password_hash)
        .execute(&mut *tx)
        .await?;
    spend_reset_links(&mut tx, user_id).await?;
    sqlx::query!("DELETE FROM oauth_sessions WHERE user_id = $1", user_id).execute(&mut *tx).await?;
    revoke_user_tokens(&mut tx, user_id, None).await?;
    sqlx::query!("DELETE FROM login_failures WHERE email = (SELECT lower(email) FROM users WHERE id = $1)", user_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(user_id))
}

/// What stays signed in after a password change: the browser session, or the access token (by its sha256), the
/// change was made with. Everything else of the user ends.
#[derive(Debug, Clone, Copy)]
pub enum KeepSignedIn<'a> {
    Session(i64),
    AccessToken(&'a [u8]),
    Nothing,
}

/// Sets a new password (checked and hashed by the caller): every session of the user ends and the user's tokens
/// are revoked, except what `keep` names; outstanding reset links are spent.
pub async fn change_password(pool: &PgPool, user_id: i64, password_hash: &str, keep: KeepSignedIn<'_>) -> Result<()> {
    let (keep_session, keep_token) = match keep {
        KeepSignedIn::Session(id) => (Some(id), None),
        KeepSignedIn::AccessToken(sha256) => (None, Some(sha256)),
        KeepSignedIn::Nothing => (None, None),
    };
    let mut tx = pool.begin().await?;
    let updated =
        sqlx::query!("UPDATE users SET password = $2 WHERE id = $1", user_id, password_hash).execute(&mut *tx).await?;
    if updated.rows_affected() == 0 {
        return Err(Error::NotFound { entity: "JheUser" });
    }
    sqlx::query!(
        "DELETE FROM oauth_sessions WHERE user_id = $1 AND ($2::bigint IS NULL OR id <> $2)",
        user_id,
        keep_session,
    )
    .execute(&mut *tx)
    .await?;
    // outstanding reset links were meant for the old password
    spend_reset_links(&mut tx, user_id).await?;
    revoke_user_tokens(&mut tx, user_id, keep_token).await?;
    tx.commit().await?;
    Ok(())
}

/// An account a reset link may be sent to: active and with a password (accounts without one sign in another
/// way, as Django's reset form only serves users with a usable password).
#[derive(Debug, Clone)]
pub struct ResetCandidate {
    pub id: i64,
    pub email: String,
}

pub async fn password_reset_candidate(pool: &PgPool, email: &str) -> Result<Option<ResetCandidate>> {
    Ok(sqlx::query_as!(
        ResetCandidate,
        "SELECT id, email FROM users WHERE lower(email) = lower($1) AND is_active AND password <> ''",
        email.trim(),
    )
    .fetch_optional(pool)
    .await?)
}

/// The email and stored password hash of an active user (for the current-password check of a password change).
pub async fn active_user_password(pool: &PgPool, user_id: i64) -> Result<Option<(String, String)>> {
    Ok(sqlx::query!("SELECT email, password FROM users WHERE id = $1 AND is_active", user_id)
        .fetch_optional(pool)
        .await?
        .map(|row| (row.email, row.password)))
}

/// The failed-login limits (docs/identity.md "Accounts").
#[derive(Debug, Clone, Copy)]
pub struct LockoutPolicy {
    /// failures within `window` that lock the email
    pub max_failures: i32,
    pub window: Duration,
    /// how long a lock lasts
    pub lockout: Duration,
}

/// Until when logins for `email` are refused, if they are now.
pub async fn login_locked_until(pool: &PgPool, email: &str) -> Result<Option<DateTime<Utc>>> {
    let locked: Option<Option<DateTime<Utc>>> = sqlx::query_scalar!(
        "SELECT locked_until FROM login_failures WHERE email = lower($1) AND locked_until > now()",
        email.trim(),
    )
    .fetch_optional(pool)
    .await?;
    Ok(locked.flatten())
}

/// Counts a failed login for `email` (one atomic statement, so concurrent failures on several replicas all
/// count). A failure after the window or after a lock ran out starts a new count. Returns the lock's end when
/// this failure locked the email.
pub async fn record_login_failure(pool: &PgPool, email: &str, policy: &LockoutPolicy) -> Result<Option<DateTime<Utc>>> {
    let now = Utc::now();
    let window_opened_after = now - policy.window;
    let locked_until = now + policy.lockout;
    // rows of emails that failed long ago are dropped on the way (emails that exist nowhere are counted too)
    sqlx::query!(
        "DELETE FROM login_failures WHERE window_start < $1 AND (locked_until IS NULL OR locked_until < $2)",
        window_opened_after,
        now,
    )
    .execute(pool)
    .await?;
    let locked: Option<DateTime<Utc>> = sqlx::query_scalar!(
        "INSERT INTO login_failures AS f (email, failures, window_start, locked_until)
         VALUES (lower($1), 1, $2, CASE WHEN $5 <= 1 THEN $4::timestamptz END)
         ON CONFLICT (email) DO UPDATE SET
             failures = CASE WHEN f.window_start < $3 OR f.locked_until <= $2 THEN 1 ELSE f.failures + 1 END,
             window_start = CASE WHEN f.window_start < $3 OR f.locked_until <= $2 THEN $2 ELSE f.window_start END,
             locked_until = CASE
                 WHEN f.locked_until > $2 THEN f.locked_until
                 WHEN (CASE WHEN f.window_start < $3 OR f.locked_until <= $2 THEN 1 ELSE f.failures + 1 END) >= $5
                     THEN $4
                 ELSE NULL END
         RETURNING locked_until",
        email.trim(),
        now,
        window_opened_after,
        locked_until,
        policy.max_failures,
    )
    .fetch_one(pool)
    .await?;
    Ok(locked.filter(|until| *until > now))
}

/// Forgets the failed logins of `email` (after a successful login).
pub async fn clear_login_failures(pool: &PgPool, email: &str) -> Result<()> {
    sqlx::query!("DELETE FROM login_failures WHERE email = lower($1)", email.trim()).execute(pool).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_orgs_are_parsed_with_viewer_as_the_default_role() {
        assert_eq!(parse_default_orgs("").unwrap(), vec![]);
        assert_eq!(
            parse_default_orgs(" 20001:manager; 20002 ;;20001:viewer").unwrap(),
            vec![
                DefaultMembership { organization_id: 20001, role: "manager".into() },
                DefaultMembership { organization_id: 20002, role: "viewer".into() },
            ]
        );
        assert!(parse_default_orgs("x:viewer").unwrap_err().contains("x:viewer"));
        assert!(parse_default_orgs("1:owner").is_err());
    }
}
