//! Patients: their profile, identifiers and organizations.

use crate::organizations::Organization;
use crate::{Error, Page, PageRequest, Result};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, PgPool, Postgres, QueryBuilder};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientIdentifier {
    pub id: i64,
    pub system: String,
    pub value: String,
}

/// A patient as the REST API shows it (jhe-compat §5.1).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Patient {
    pub id: i64,
    pub jhe_user_id: Option<i64>,
    #[sqlx(json)]
    pub identifiers: Vec<PatientIdentifier>,
    pub name_family: Option<String>,
    pub name_given: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub telecom_phone: Option<String>,
    pub telecom_email: Option<String>,
    #[sqlx(json)]
    pub organizations: Vec<Organization>,
}

/// A new patient's fields; `identifiers` are (system, value) pairs.
#[derive(Debug, Clone, Default)]
pub struct NewPatient {
    pub organization_id: i64,
    pub telecom_email: String,
    pub name_family: Option<String>,
    pub name_given: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub telecom_phone: Option<String>,
    pub identifiers: Vec<(String, String)>,
}

/// Changes to a patient; `None` leaves a field as it is, `identifiers: Some(..)` replaces the whole set.
#[derive(Debug, Clone, Default)]
pub struct PatientChanges {
    pub name_family: Option<Option<String>>,
    pub name_given: Option<Option<String>>,
    pub birth_date: Option<Option<NaiveDate>>,
    pub telecom_phone: Option<Option<String>>,
    pub telecom_email: Option<String>,
    pub identifiers: Option<Vec<(String, String)>>,
}

/// Filters of the patient list (jhe-compat §5.6).
#[derive(Debug, Clone, Default)]
pub struct PatientFilter {
    /// Only patients in at least one of these organizations (`None`: every patient). Callers pass the
    /// organizations the practitioner shares, already narrowed by any `organization_id` filter.
    pub organization_ids: Option<Vec<i64>>,
    pub study_id: Option<i64>,
    pub patient_id: Option<i64>,
    pub identifier_value: Option<String>,
}

pub(crate) const PATIENT_SELECT: &str = "SELECT p.id, p.user_id AS jhe_user_id, p.name_family, p.name_given,
        p.birth_date, p.telecom_phone, u.email AS telecom_email,
        COALESCE((SELECT jsonb_agg(jsonb_build_object('id', i.id, 'system', i.system, 'value', i.value) ORDER BY i.id)
                  FROM patient_identifiers i WHERE i.patient_id = p.id), '[]'::jsonb) AS identifiers,
        COALESCE((SELECT jsonb_agg(jsonb_build_object('id', o.id, 'name', o.name, 'type', o.type, 'part_of', o.part_of)
                                   ORDER BY o.id)
                  FROM patient_organizations po JOIN organizations o ON o.id = po.organization_id
                  WHERE po.patient_id = p.id), '[]'::jsonb) AS organizations
    FROM patients p LEFT JOIN users u ON u.id = p.user_id";

/// `SELECT <patient id> AS id …` for the patients matching `filter`. With organizations, it is driven from the
/// (organization, patient) index, so a list of one large organization never scans all patients.
fn push_matching_ids(query: &mut QueryBuilder<Postgres>, filter: &PatientFilter) {
    let id_column = match &filter.organization_ids {
        Some(organization_ids) => {
            // a patient in two of the organizations must be listed once
            let distinct = if organization_ids.len() > 1 { "DISTINCT " } else { "" };
            query.push(format!("SELECT {distinct}po.patient_id AS id FROM patient_organizations po WHERE "));
            match organization_ids.as_slice() {
                [single] => query.push("po.organization_id = ").push_bind(*single),
                many => query.push("po.organization_id = ANY(").push_bind(many.to_vec()).push(")"),
            };
            "po.patient_id"
        }
        None => {
            query.push("SELECT p.id AS id FROM patients p WHERE TRUE");
            "p.id"
        }
    };
    if let Some(study_id) = filter.study_id {
        query.push(format!(
            " AND EXISTS (SELECT 1 FROM study_patients sp WHERE sp.patient_id = {id_column} AND sp.study_id = "
        ));
        query.push_bind(study_id).push(")");
    }
    if let Some(patient_id) = filter.patient_id {
        query.push(format!(" AND {id_column} = ")).push_bind(patient_id);
    }
    if let Some(value) = &filter.identifier_value {
        query.push(format!(
            " AND EXISTS (SELECT 1 FROM patient_identifiers i WHERE i.patient_id = {id_column} AND i.value = "
        ));
        query.push_bind(value.clone()).push(")");
    }
}

/// Patients matching `filter`, ordered by id.
pub async fn list_patients(pool: &PgPool, filter: &PatientFilter, page: PageRequest) -> Result<Page<Patient>> {
    if filter.organization_ids.as_ref().is_some_and(Vec::is_empty) {
        return Ok(Page { count: 0, items: Vec::new() });
    }
    let mut count_query = QueryBuilder::new("SELECT count(*) FROM (");
    push_matching_ids(&mut count_query, filter);
    count_query.push(") matching");
    let count: i64 = count_query.build_query_scalar().fetch_one(pool).await?;
    if count <= page.offset() {
        return Ok(Page { count, items: Vec::new() });
    }
    // pick the page's ids first, so the nested identifiers and organizations are built for those rows only
    // (a projection under OFFSET would build them for every skipped row too)
    let mut query = QueryBuilder::new("WITH page AS (");
    push_matching_ids(&mut query, filter);
    query.push(" ORDER BY 1 LIMIT ").push_bind(page.limit()).push(" OFFSET ").push_bind(page.offset());
    query.push(") ").push(PATIENT_SELECT).push(" WHERE p.id IN (SELECT id FROM page) ORDER BY p.id");
    let items = query.build_query_as().fetch_all(pool).await?;
    Ok(Page { count, items })
}

pub async fn get_patient(pool: &PgPool, id: i64) -> Result<Patient> {
    sqlx::query_as(AssertSqlSafe(format!("{PATIENT_SELECT} WHERE p.id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(Error::NotFound { entity: "Patient" })
}

/// The patient profile of a user, if any.
pub async fn patient_of_user(pool: &PgPool, user_id: i64) -> Result<Option<Patient>> {
    Ok(sqlx::query_as(AssertSqlSafe(format!("{PATIENT_SELECT} WHERE p.user_id = $1")))
        .bind(user_id)
        .fetch_optional(pool)
        .await?)
}

/// Patients whose account email is `email` (case-insensitive), restricted to those in one of `organization_ids`
/// when given.
pub async fn patients_by_email(pool: &PgPool, email: &str, organization_ids: Option<&[i64]>) -> Result<Vec<Patient>> {
    Ok(sqlx::query_as(AssertSqlSafe(format!(
        "{PATIENT_SELECT} WHERE lower(u.email) = lower($1) AND ($2::bigint[] IS NULL OR EXISTS (
             SELECT 1 FROM patient_organizations po WHERE po.patient_id = p.id AND po.organization_id = ANY($2)))
         ORDER BY p.id"
    )))
    .bind(email)
    .bind(organization_ids)
    .fetch_all(pool)
    .await?)
}

async fn check_identifiers_free(
    tx: &mut sqlx::PgConnection,
    identifiers: &[(String, String)],
    except_patient: Option<i64>,
) -> Result<()> {
    for (system, value) in identifiers {
        if system.trim().is_empty() || value.trim().is_empty() {
            return Err(Error::Invalid("identifiers: each identifier needs a non-empty system and value".into()));
        }
        let owner = sqlx::query_scalar!(
            "SELECT patient_id FROM patient_identifiers WHERE system = $1 AND value = $2",
            system,
            value,
        )
        .fetch_optional(&mut *tx)
        .await?;
        if owner.is_some() && owner != except_patient {
            return Err(Error::Invalid(format!(
                "The external identifier {system}|{value} is already in use by another patient."
            )));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for pair in identifiers {
        if !seen.insert(pair) {
            return Err(Error::Invalid(format!("identifiers: {}|{} is listed twice", pair.0, pair.1)));
        }
    }
    Ok(())
}

async fn insert_identifiers(
    tx: &mut sqlx::PgConnection,
    patient_id: i64,
    identifiers: &[(String, String)],
) -> Result<()> {
    for (system, value) in identifiers {
        sqlx::query!(
            "INSERT INTO patient_identifiers (patient_id, system, value) VALUES ($1, $2, $3)",
            patient_id,
            system,
            value,
        )
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Creates a patient in an organization, reusing the user account with that email if one exists.
pub async fn create_patient(pool: &PgPool, new: &NewPatient) -> Result<Patient> {
    let mut tx = pool.begin().await?;
    crate::organizations::require_organization(&mut *tx, new.organization_id).await?;
    check_identifiers_free(&mut tx, &new.identifiers, None).await?;
    let existing =
        sqlx::query!("SELECT id, user_type, is_superuser FROM users WHERE lower(email) = lower($1)", new.telecom_email)
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| (row.id, if row.is_superuser { Some("superuser".to_owned()) } else { row.user_type }));
    let user_id = match existing {
        Some((_, Some(kind))) if kind == "practitioner" || kind == "superuser" => {
            return Err(Error::Conflict(format!(
                "{} belongs to a practitioner or administrator account and cannot be used for a patient",
                new.telecom_email
            )));
        }
        Some((id, _)) => {
            let has_patient =
                sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM patients WHERE user_id = $1) AS "exists!""#, id)
                    .fetch_one(&mut *tx)
                    .await?;
            if has_patient {
                return Err(Error::Conflict(format!(
                    "a patient with the email {} already exists; ask them to join this organization instead \
                     (POST /api/v1/patients/organization_requests)",
                    new.telecom_email
                )));
            }
            sqlx::query!("UPDATE users SET user_type = 'patient' WHERE id = $1", id).execute(&mut *tx).await?;
            id
        }
        None => {
            sqlx::query_scalar!(
                r#"INSERT INTO users (email, first_name, last_name, user_type) VALUES ($1, $2, $3, 'patient')
             RETURNING id AS "id!""#,
                new.telecom_email,
                new.name_given.as_deref().unwrap_or(""),
                new.name_family.as_deref().unwrap_or(""),
            )
            .fetch_one(&mut *tx)
            .await?
        }
    };
    let patient_id = sqlx::query_scalar!(
        r#"INSERT INTO patients (user_id, name_family, name_given, birth_date, telecom_phone)
         VALUES ($1, $2, $3, $4, $5) RETURNING id AS "id!""#,
        user_id,
        new.name_family,
        new.name_given,
        new.birth_date,
        new.telecom_phone,
    )
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query!(
        "INSERT INTO patient_organizations (patient_id, organization_id) VALUES ($1, $2)",
        patient_id,
        new.organization_id,
    )
    .execute(&mut *tx)
    .await?;
    insert_identifiers(&mut tx, patient_id, &new.identifiers).await?;
    tx.commit().await?;
    get_patient(pool, patient_id).await
}

pub async fn update_patient(pool: &PgPool, id: i64, changes: &PatientChanges) -> Result<Patient> {
    let mut tx = pool.begin().await?;
    let user_id: Option<Option<i64>> = sqlx::query_scalar!("SELECT user_id FROM patients WHERE id = $1 FOR UPDATE", id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(user_id) = user_id else {
        return Err(Error::NotFound { entity: "Patient" });
    };
    sqlx::query!(
        "UPDATE patients SET
            name_family = CASE WHEN $2 THEN $3 ELSE name_family END,
            name_given = CASE WHEN $4 THEN $5 ELSE name_given END,
            birth_date = CASE WHEN $6 THEN $7 ELSE birth_date END,
            telecom_phone = CASE WHEN $8 THEN $9 ELSE telecom_phone END,
            last_updated = now()
         WHERE id = $1",
        id,
        changes.name_family.is_some(),
        changes.name_family.clone().flatten(),
        changes.name_given.is_some(),
        changes.name_given.clone().flatten(),
        changes.birth_date.is_some(),
        changes.birth_date.flatten(),
        changes.telecom_phone.is_some(),
        changes.telecom_phone.clone().flatten(),
    )
    .execute(&mut *tx)
    .await?;
    if let (Some(email), Some(user_id)) = (&changes.telecom_email, user_id) {
        let taken = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM users WHERE lower(email) = lower($1) AND id <> $2) AS "exists!""#,
            email,
            user_id,
        )
        .fetch_one(&mut *tx)
        .await?;
        if taken {
            return Err(Error::Conflict(format!("telecomEmail: {email} is already used by another account")));
        }
        // a new address is unverified until its owner confirms it
        sqlx::query!(
            "UPDATE users SET email = $2, email_is_verified = email_is_verified AND lower(email) = lower($2)
              WHERE id = $1",
            user_id,
            email
        )
        .execute(&mut *tx)
        .await?;
    }
    if let Some(identifiers) = &changes.identifiers {
        check_identifiers_free(&mut tx, identifiers, Some(id)).await?;
        sqlx::query!("DELETE FROM patient_identifiers WHERE patient_id = $1", id).execute(&mut *tx).await?;
        insert_identifiers(&mut tx, id, identifiers).await?;
    }
    tx.commit().await?;
    get_patient(pool, id).await
}

/// Removes a patient from an organization with their enrolments and consents in that organization's studies.
/// A patient left in no organization is deleted with their account. Returns whether the patient was deleted.
pub async fn remove_patient_from_organization(pool: &PgPool, patient_id: i64, organization_id: i64) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let removed = sqlx::query!(
        "DELETE FROM patient_organizations WHERE patient_id = $1 AND organization_id = $2",
        patient_id,
        organization_id,
    )
    .execute(&mut *tx)
    .await?;
    if removed.rows_affected() == 0 {
        return Err(Error::NotFound { entity: "PatientOrganization" });
    }
    // consents cascade from the enrolment rows
    sqlx::query!(
        "DELETE FROM study_patients sp USING studies s
         WHERE sp.study_id = s.id AND sp.patient_id = $1 AND s.organization_id = $2",
        patient_id,
        organization_id,
    )
    .execute(&mut *tx)
    .await?;
    let remaining = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM patient_organizations WHERE patient_id = $1"#,
        patient_id,
    )
    .fetch_one(&mut *tx)
    .await?;
    let deleted = remaining == 0;
    if deleted {
        // the user row cascades to the patient row; a patient without a user is deleted directly
        let user_id: Option<i64> =
            sqlx::query_scalar!("DELETE FROM patients WHERE id = $1 RETURNING user_id", patient_id)
                .fetch_one(&mut *tx)
                .await?;
        if let Some(user_id) = user_id {
            sqlx::query!(
                "DELETE FROM users WHERE id = $1 AND is_superuser = FALSE
                   AND NOT EXISTS (SELECT 1 FROM practitioners WHERE user_id = $1)",
                user_id,
            )
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(deleted)
}

/// Adds an existing patient to an organization.
pub async fn add_patient_to_organization(pool: &PgPool, patient_id: i64, organization_id: i64) -> Result<Patient> {
    get_patient(pool, patient_id).await?;
    crate::organizations::require_organization(pool, organization_id).await?;
    let inserted = sqlx::query!(
        "INSERT INTO patient_organizations (patient_id, organization_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        patient_id,
        organization_id,
    )
    .execute(pool)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(Error::Invalid(format!("patient {patient_id} is already in organization {organization_id}")));
    }
    get_patient(pool, patient_id).await
}

/// Organization ids a patient belongs to.
pub async fn patient_organization_ids(pool: &PgPool, patient_id: i64) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar!(
        "SELECT organization_id FROM patient_organizations WHERE patient_id = $1 ORDER BY 1",
        patient_id
    )
    .fetch_all(pool)
    .await?)
}
