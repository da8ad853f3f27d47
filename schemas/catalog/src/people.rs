//! User accounts and practitioner profiles.

use crate::organizations::Organization;
use crate::passwords::hash_password;
use crate::patients::{Patient, patient_of_user, patients_by_email};
use crate::{Error, Page, PageRequest, Result};
use serde::Serialize;
use sqlx::{AssertSqlSafe, PgPool};

/// A user as the REST API shows it (jhe-compat §5.2).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: i64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    #[sqlx(skip)]
    pub patient: Option<Patient>,
    pub user_type: Option<String>,
    pub is_superuser: bool,
}

/// A practitioner as the REST API shows it (jhe-compat §5.4).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Practitioner {
    pub id: i64,
    pub jhe_user_id: i64,
    pub name_family: Option<String>,
    pub name_given: Option<String>,
    pub telecom_email: String,
    #[sqlx(json)]
    pub organizations: Vec<Organization>,
}

const USER_COLUMNS: &str = "id, email, first_name, last_name, user_type, is_superuser";

pub(crate) const PRACTITIONER_SELECT: &str = "SELECT pr.id, pr.user_id AS jhe_user_id, pr.name_family, pr.name_given,
        u.email AS telecom_email,
        COALESCE((SELECT jsonb_agg(jsonb_build_object('id', o.id, 'name', o.name, 'type', o.type, 'part_of', o.part_of)
                                   ORDER BY o.id)
                  FROM practitioner_organizations po JOIN organizations o ON o.id = po.organization_id
                  WHERE po.practitioner_id = pr.id), '[]'::jsonb) AS organizations
    FROM practitioners pr JOIN users u ON u.id = pr.user_id";

async fn with_patient(pool: &PgPool, mut user: User) -> Result<User> {
    user.patient = patient_of_user(pool, user.id).await?;
    Ok(user)
}

/// Users ordered by last name; `only_user` restricts the list to one account (non-superusers see themselves).
pub async fn list_users(
    pool: &PgPool,
    email: Option<&str>,
    only_user: Option<i64>,
    page: PageRequest,
) -> Result<Page<User>> {
    let filter = "WHERE ($1::text IS NULL OR lower(email) = lower($1)) AND ($2::bigint IS NULL OR id = $2)";
    let count: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM users {filter}")))
        .bind(email)
        .bind(only_user)
        .fetch_one(pool)
        .await?;
    let rows: Vec<User> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users {filter} ORDER BY last_name, id LIMIT $3 OFFSET $4"
    )))
    .bind(email)
    .bind(only_user)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(pool)
    .await?;
    let mut items = Vec::with_capacity(rows.len());
    for user in rows {
        items.push(with_patient(pool, user).await?);
    }
    Ok(Page { count, items })
}

pub async fn get_user(pool: &PgPool, id: i64) -> Result<User> {
    let user: User = sqlx::query_as(AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(Error::NotFound { entity: "JheUser" })?;
    with_patient(pool, user).await
}

/// A user found by email, as much of them as the caller may see.
#[derive(Debug, Clone)]
pub enum FoundUser {
    /// every field, the patient record included
    Described(Box<User>),
    /// only that the account exists: a patient outside the caller's organizations, whose names, record and even
    /// being a patient are not the caller's to know
    Exists { id: i64 },
}

/// The user whose email is `email` (case-insensitive). With `visible_in`, a patient (a user with a patient record
/// or of type patient) is described only when [`patients_by_email`] finds their record in one of those
/// organizations, the scope of `patients/global_lookup`; otherwise only their existence is told.
pub async fn find_user_by_email(pool: &PgPool, email: &str, visible_in: Option<&[i64]>) -> Result<Option<FoundUser>> {
    let user: Option<User> =
        sqlx::query_as(AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE lower(email) = lower($1)")))
            .bind(email)
            .fetch_optional(pool)
            .await?;
    let Some(user) = user else {
        return Ok(None);
    };
    let user = with_patient(pool, user).await?;
    let is_patient = user.patient.is_some() || user.user_type.as_deref() == Some("patient");
    if let Some(organization_ids) = visible_in
        && is_patient
    {
        let visible = patients_by_email(pool, email, Some(organization_ids)).await?;
        if !visible.iter().any(|patient| patient.jhe_user_id == Some(user.id)) {
            return Ok(Some(FoundUser::Exists { id: user.id }));
        }
    }
    Ok(Some(FoundUser::Described(Box::new(user))))
}

/// A new user account; `password: None` creates an account that cannot log in with a password.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub email: String,
    pub password: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub user_type: Option<String>,
    pub is_superuser: bool,
}

/// Creates a user; a practitioner (or superuser) also gets a practitioner profile.
pub async fn create_user(pool: &PgPool, new: &NewUser) -> Result<User> {
    let password = match &new.password {
        Some(password) => hash_password(password)?,
        None => String::new(),
    };
    let mut tx = pool.begin().await?;
    let taken = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM users WHERE lower(email) = lower($1)) AS "exists!""#,
        new.email,
    )
    .fetch_one(&mut *tx)
    .await?;
    if taken {
        return Err(Error::Conflict(format!("a user with the email {} already exists", new.email)));
    }
    let user_type = if new.is_superuser { Some("practitioner".to_owned()) } else { new.user_type.clone() };
    let id = sqlx::query_scalar!(
        r#"INSERT INTO users (email, password, first_name, last_name, user_type, is_superuser, is_staff)
         VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id AS "id!""#,
        new.email,
        password,
        new.first_name,
        new.last_name,
        user_type,
        new.is_superuser,
    )
    .fetch_one(&mut *tx)
    .await?;
    match user_type.as_deref() {
        Some("practitioner") => {
            sqlx::query!(
                "INSERT INTO practitioners (user_id, name_family, name_given) VALUES ($1, $2, $3)",
                id,
                new.last_name,
                new.first_name,
            )
            .execute(&mut *tx)
            .await?;
        }
        Some("patient") => {
            sqlx::query!(
                "INSERT INTO patients (user_id, name_family, name_given) VALUES ($1, $2, $3)",
                id,
                new.last_name,
                new.first_name,
            )
            .execute(&mut *tx)
            .await?;
        }
        _ => {}
    }
    tx.commit().await?;
    get_user(pool, id).await
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub is_superuser: Option<bool>,
}

/// Changes a user's names and superuser flag. (A password is changed by [`change_password`](crate::change_password),
/// which also ends sessions and revokes tokens.)
pub async fn update_user(pool: &PgPool, id: i64, changes: &UserChanges) -> Result<User> {
    let updated = sqlx::query!(
        "UPDATE users SET first_name = COALESCE($2, first_name), last_name = COALESCE($3, last_name),
             is_superuser = COALESCE($4, is_superuser)
         WHERE id = $1",
        id,
        changes.first_name,
        changes.last_name,
        changes.is_superuser,
    )
    .execute(pool)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(Error::NotFound { entity: "JheUser" });
    }
    get_user(pool, id).await
}

/// Deletes a user with their profiles, tokens and owned clients.
pub async fn delete_user(pool: &PgPool, id: i64) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query!("DELETE FROM oauth_clients WHERE owner_user_id = $1", id).execute(&mut *tx).await?;
    let deleted = sqlx::query!("DELETE FROM users WHERE id = $1", id).execute(&mut *tx).await?;
    if deleted.rows_affected() == 0 {
        return Err(Error::NotFound { entity: "JheUser" });
    }
    tx.commit().await?;
    Ok(())
}

/// The practitioner's UI settings (sticky organization/study), a JSON object.
pub async fn practitioner_settings(pool: &PgPool, practitioner_id: i64) -> Result<serde_json::Value> {
    let settings: Option<serde_json::Value> =
        sqlx::query_scalar!("SELECT settings FROM practitioners WHERE id = $1", practitioner_id)
            .fetch_optional(pool)
            .await?;
    Ok(settings.unwrap_or_else(|| serde_json::json!({})))
}

/// Merges `set` into the practitioner's settings and removes the `remove` keys (the "sticky" UI state that
/// list endpoints remember, jhe-compat §5.6).
pub async fn remember_practitioner_settings(
    pool: &PgPool,
    practitioner_id: i64,
    set: serde_json::Value,
    remove: &[&str],
) -> Result<()> {
    let remove: Vec<String> = remove.iter().map(|k| (*k).to_owned()).collect();
    // list endpoints call this on every request: skip the write (and its WAL flush) when nothing changes
    sqlx::query!(
        "UPDATE practitioners SET settings = (settings || $2::jsonb) - $3::text[]
         WHERE id = $1 AND settings IS DISTINCT FROM (settings || $2::jsonb) - $3::text[]",
        practitioner_id,
        set,
        remove.as_slice(),
    )
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn list_practitioners(pool: &PgPool, page: PageRequest) -> Result<Page<Practitioner>> {
    let count = sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM practitioners"#).fetch_one(pool).await?;
    let items = sqlx::query_as(AssertSqlSafe(format!("{PRACTITIONER_SELECT} ORDER BY pr.id LIMIT $1 OFFSET $2")))
        .bind(page.limit())
        .bind(page.offset())
        .fetch_all(pool)
        .await?;
    Ok(Page { count, items })
}

pub async fn get_practitioner(pool: &PgPool, id: i64) -> Result<Practitioner> {
    sqlx::query_as(AssertSqlSafe(format!("{PRACTITIONER_SELECT} WHERE pr.id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(Error::NotFound { entity: "Practitioner" })
}

/// Creates (or reuses) the account with `email` as a practitioner, optionally as a member of an organization.
pub async fn create_practitioner(
    pool: &PgPool,
    email: &str,
    name_family: Option<&str>,
    name_given: Option<&str>,
    organization_id: Option<i64>,
) -> Result<Practitioner> {
    let mut tx = pool.begin().await?;
    let existing = sqlx::query!("SELECT id, user_type FROM users WHERE lower(email) = lower($1)", email)
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| (row.id, row.user_type));
    let user_id = match existing {
        Some((_, Some(kind))) if kind == "patient" => {
            return Err(Error::Conflict(format!("{email} belongs to a patient account")));
        }
        Some((id, _)) => {
            sqlx::query!("UPDATE users SET user_type = 'practitioner' WHERE id = $1", id).execute(&mut *tx).await?;
            id
        }
        None => {
            sqlx::query_scalar!(
                r#"INSERT INTO users (email, first_name, last_name, user_type) VALUES ($1, $2, $3, 'practitioner')
             RETURNING id AS "id!""#,
                email,
                name_given.unwrap_or(""),
                name_family.unwrap_or(""),
            )
            .fetch_one(&mut *tx)
            .await?
        }
    };
    let practitioner_id = sqlx::query_scalar!(
        r#"INSERT INTO practitioners (user_id, name_family, name_given) VALUES ($1, $2, $3)
         ON CONFLICT (user_id) DO UPDATE SET name_family = COALESCE(EXCLUDED.name_family, practitioners.name_family),
             name_given = COALESCE(EXCLUDED.name_given, practitioners.name_given)
         RETURNING id AS "id!""#,
        user_id,
        name_family,
        name_given,
    )
    .fetch_one(&mut *tx)
    .await?;
    if let Some(organization_id) = organization_id {
        crate::organizations::require_organization(&mut *tx, organization_id).await?;
        sqlx::query!(
            "INSERT INTO practitioner_organizations (practitioner_id, organization_id, role) VALUES ($1, $2, 'member')
             ON CONFLICT DO NOTHING",
            practitioner_id,
            organization_id,
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    get_practitioner(pool, practitioner_id).await
}

pub async fn update_practitioner(
    pool: &PgPool,
    id: i64,
    name_family: Option<&str>,
    name_given: Option<&str>,
) -> Result<Practitioner> {
    let updated = sqlx::query!(
        "UPDATE practitioners SET name_family = COALESCE($2, name_family), name_given = COALESCE($3, name_given),
             last_updated = now() WHERE id = $1",
        id,
        name_family,
        name_given,
    )
    .execute(pool)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(Error::NotFound { entity: "Practitioner" });
    }
    get_practitioner(pool, id).await
}

/// Deletes a practitioner profile, and its user account unless it is also a patient or a superuser.
pub async fn delete_practitioner(pool: &PgPool, id: i64) -> Result<()> {
    let mut tx = pool.begin().await?;
    let user_id: Option<i64> = sqlx::query_scalar!("DELETE FROM practitioners WHERE id = $1 RETURNING user_id", id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(user_id) = user_id else {
        return Err(Error::NotFound { entity: "Practitioner" });
    };
    sqlx::query!(
        "DELETE FROM users WHERE id = $1 AND is_superuser = FALSE
           AND NOT EXISTS (SELECT 1 FROM patients WHERE user_id = $1)",
        user_id,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
