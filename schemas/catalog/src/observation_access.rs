//! What the query layer asks the control plane before it reads observations: which (patient, code) pairs a
//! practitioner may see under consent (decisions.md, "Consent is enforced on every read"), the checks that
//! pre-authorize explicit filters (jhe-compat §4.3), and the rows that decorate results (code texts, patient names).
//!
//! Runtime-checked statements (`sqlx::query_as`) so the offline query data in `.sqlx/` is untouched.

use crate::Result;
use sqlx::PgPool;

/// A practitioner read's consent question. Every `None` leaves that dimension open.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConsentQuery<'a> {
    /// The caller's organizations: a pair counts only if the patient is in one of them and consents to the code
    /// for a study one of them owns. `None` means every organization (a superuser).
    pub organizations: Option<&'a [i64]>,
    /// Only these patients.
    pub patients: Option<&'a [i64]>,
    /// A study-scoped read: the patient is enrolled in the study, the study requests the code and the patient
    /// consents to the code *for this study*.
    pub study_id: Option<i64>,
    /// Only patients of this organization.
    pub organization_id: Option<i64>,
    /// Only these (coding system, coding code) pairs.
    pub codes: Option<&'a [(String, String)]>,
}

/// One (patient, code) pair a reader may see.
#[derive(Debug, Clone, PartialEq, Eq, Hash, sqlx::FromRow)]
pub struct ConsentedPair {
    pub patient_id: i64,
    pub coding_system: String,
    pub coding_code: String,
}

/// The (patient, code) pairs `query` allows, ordered by (system, code, patient). Consent is read as it is now,
/// so a revoked consent hides the data from the next read.
pub async fn consented_pairs(pool: &PgPool, query: &ConsentQuery<'_>) -> Result<Vec<ConsentedPair>> {
    let (systems, codes): (Option<Vec<&str>>, Option<Vec<&str>>) = match query.codes {
        Some(pairs) => (
            Some(pairs.iter().map(|(system, _)| system.as_str()).collect()),
            Some(pairs.iter().map(|(_, code)| code.as_str()).collect()),
        ),
        None => (None, None),
    };
    let pairs = sqlx::query_as::<_, ConsentedPair>(
        "SELECT DISTINCT sp.patient_id, c.coding_system, c.coding_code
         FROM study_patient_scope_consents spsc
         JOIN study_patients sp ON sp.id = spsc.study_patient_id
         JOIN studies s ON s.id = sp.study_id
         JOIN codeable_concepts c ON c.id = spsc.scope_code_id
         WHERE spsc.consented
           AND ($1::int8[] IS NULL OR (
                    s.organization_id = ANY($1)
                    AND EXISTS (SELECT 1 FROM patient_organizations po
                                WHERE po.patient_id = sp.patient_id AND po.organization_id = ANY($1))))
           AND ($2::int8[] IS NULL OR sp.patient_id = ANY($2))
           AND ($3::int8 IS NULL OR (
                    sp.study_id = $3
                    AND EXISTS (SELECT 1 FROM study_scope_requests r
                                WHERE r.study_id = $3 AND r.scope_code_id = spsc.scope_code_id)))
           AND ($4::int8 IS NULL OR EXISTS (SELECT 1 FROM patient_organizations po
                                            WHERE po.patient_id = sp.patient_id AND po.organization_id = $4))
           AND ($5::text[] IS NULL OR (c.coding_system, c.coding_code) IN
                    (SELECT w.system, w.code FROM UNNEST($5::text[], $6::text[]) AS w(system, code)))
         ORDER BY c.coding_system, c.coding_code, sp.patient_id",
    )
    .bind(query.organizations)
    .bind(query.patients)
    .bind(query.study_id)
    .bind(query.organization_id)
    .bind(systems)
    .bind(codes)
    .fetch_all(pool)
    .await?;
    Ok(pairs)
}

/// The organization that owns a study, or `None` when there is no such study.
pub async fn study_organization_id(pool: &PgPool, study_id: i64) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar::<_, i64>("SELECT organization_id FROM studies WHERE id = $1")
        .bind(study_id)
        .fetch_optional(pool)
        .await?)
}

/// The organizations of each of `patient_ids` that exists, as (patient, organization) rows; a patient in no
/// organization appears with `None`.
pub async fn organizations_of_patients(pool: &PgPool, patient_ids: &[i64]) -> Result<Vec<(i64, Option<i64>)>> {
    Ok(sqlx::query_as::<_, (i64, Option<i64>)>(
        "SELECT p.id, po.organization_id FROM patients p
         LEFT JOIN patient_organizations po ON po.patient_id = p.id
         WHERE p.id = ANY($1)
         ORDER BY 1, 2",
    )
    .bind(patient_ids)
    .fetch_all(pool)
    .await?)
}

/// Whether an organization with this id exists.
pub async fn organization_exists(pool: &PgPool, organization_id: i64) -> Result<bool> {
    Ok(sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM organizations WHERE id = $1)")
        .bind(organization_id)
        .fetch_one(pool)
        .await?)
}

/// Patients carrying an external identifier with this value (any system, as the reference matches them).
pub async fn patient_ids_by_identifier_value(pool: &PgPool, value: &str) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar::<_, i64>("SELECT DISTINCT patient_id FROM patient_identifiers WHERE value = $1 ORDER BY 1")
        .bind(value)
        .fetch_all(pool)
        .await?)
}

/// A code as the code table holds it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CodeDetails {
    pub id: i64,
    pub coding_system: String,
    pub coding_code: String,
    pub text: String,
}

/// The code-table rows of the given (system, code) pairs that exist.
pub async fn code_details(pool: &PgPool, pairs: &[(String, String)]) -> Result<Vec<CodeDetails>> {
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let systems: Vec<&str> = pairs.iter().map(|(system, _)| system.as_str()).collect();
    let codes: Vec<&str> = pairs.iter().map(|(_, code)| code.as_str()).collect();
    Ok(sqlx::query_as::<_, CodeDetails>(
        "SELECT c.id, c.coding_system, c.coding_code, c.text FROM codeable_concepts c
         WHERE (c.coding_system, c.coding_code) IN
               (SELECT w.system, w.code FROM UNNEST($1::text[], $2::text[]) AS w(system, code))",
    )
    .bind(systems)
    .bind(codes)
    .fetch_all(pool)
    .await?)
}

/// A patient's name, for observation rows that show it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PatientName {
    pub id: i64,
    pub name_family: Option<String>,
    pub name_given: Option<String>,
}

/// The names of the given patients that exist.
pub async fn patient_names(pool: &PgPool, patient_ids: &[i64]) -> Result<Vec<PatientName>> {
    if patient_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_as::<_, PatientName>("SELECT id, name_family, name_given FROM patients WHERE id = ANY($1)")
        .bind(patient_ids)
        .fetch_all(pool)
        .await?)
}
