//! A patient's consent, per study they are enrolled in and per scope code the study requests (jhe-compat §3.4,
//! §5.7, §8). A requested code without a consent row is pending.

use crate::data_sources::{CodeableConcept, DataSource};
use crate::organizations::OrganizationShort;
use crate::patients::Patient;
use crate::studies::data_sources_of_studies;
use crate::{Error, Result};
use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};

/// A requested code and the patient's answer; both `None` while pending.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScopeConsent {
    pub code: CodeableConcept,
    pub consented: Option<bool>,
    #[serde(serialize_with = "serialize_optional_datetime")]
    pub consented_time: Option<DateTime<Utc>>,
}

/// Which list of a consent view a study appears in, with the codes that put it there.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StudyScopes {
    /// requested codes the patient has answered (`scopeConsents`)
    ScopeConsents(Vec<ScopeConsent>),
    /// requested codes the patient has not answered yet (`pendingScopeConsents`)
    PendingScopeConsents(Vec<ScopeConsent>),
}

/// A study as the patient's consent screen shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StudyConsents {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub organization: OrganizationShort,
    pub data_sources: Vec<DataSource>,
    #[serde(flatten)]
    pub scopes: StudyScopes,
}

/// `GET /patients/{id}/consents`. A study with both answered and pending codes is in both lists.
#[derive(Debug, Clone, Serialize)]
pub struct PatientConsents {
    pub patient: Patient,
    /// codes consented to in at least one study
    pub consolidated_consented_scopes: Vec<CodeableConcept>,
    pub studies_pending_consent: Vec<StudyConsents>,
    pub studies: Vec<StudyConsents>,
}

/// The enrolment a consent row belongs to, as ids.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct StudyPatientIds {
    pub id: i64,
    pub study: i64,
    pub patient: i64,
}

/// A consent row as POST and PATCH return it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct StudyScopeConsent {
    pub id: i64,
    #[sqlx(json)]
    pub study_patient: StudyPatientIds,
    #[sqlx(json)]
    pub scope_code: CodeableConcept,
    pub consented: bool,
    #[serde(serialize_with = "crate::wire::serialize_drf_datetime")]
    pub consented_time: DateTime<Utc>,
}

/// What a consent write does with each code it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentWrite {
    /// a new answer (POST); the code must be requested by the study and not answered yet
    Create,
    /// a changed answer (PATCH); the code must be answered already
    Update,
    /// withdraws the answer (DELETE), making the code pending again
    Delete,
}

/// The codes of one study that a consent write names. `consented` is required except for `ConsentWrite::Delete`.
#[derive(Debug, Clone)]
pub struct StudyConsentChanges {
    pub study_id: i64,
    pub scope_consents: Vec<ScopeConsentChange>,
}

#[derive(Debug, Clone)]
pub struct ScopeConsentChange {
    pub coding_system: String,
    pub coding_code: String,
    pub consented: Option<bool>,
}

fn serialize_optional_datetime<S: Serializer>(value: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(time) => crate::wire::serialize_drf_datetime(time, serializer),
        None => serializer.serialize_none(),
    }
}

const CODE_JSON: &str =
    "jsonb_build_object('id', c.id, 'coding_system', c.coding_system, 'coding_code', c.coding_code, 'text', c.text)";

/// One requested code of a study the patient is enrolled in, with the patient's answer if any.
#[derive(sqlx::FromRow)]
struct RequestedScope {
    study_id: i64,
    study_name: String,
    study_description: String,
    #[sqlx(json)]
    organization: OrganizationShort,
    #[sqlx(json)]
    code: CodeableConcept,
    consented: Option<bool>,
    consented_time: Option<DateTime<Utc>>,
}

/// The consent view of a patient: studies ordered by id, codes by scope request id.
pub async fn patient_consents(pool: &PgPool, patient: Patient) -> Result<PatientConsents> {
    let consolidated_consented_scopes = sqlx::query_as!(
        CodeableConcept,
        "SELECT c.id, c.coding_system, c.coding_code, c.text FROM codeable_concepts c
         WHERE EXISTS (SELECT 1 FROM study_patient_scope_consents spsc
                       JOIN study_patients sp ON sp.id = spsc.study_patient_id
                       WHERE spsc.scope_code_id = c.id AND spsc.consented AND sp.patient_id = $1)
         ORDER BY c.id",
        patient.id,
    )
    .fetch_all(pool)
    .await?;
    let requested: Vec<RequestedScope> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT s.id AS study_id, s.name AS study_name, s.description AS study_description,
                jsonb_build_object('id', o.id, 'name', o.name, 'type', o.type) AS organization,
                {CODE_JSON} AS code, spsc.consented, spsc.consented_time
         FROM study_patients sp
         JOIN studies s ON s.id = sp.study_id
         JOIN organizations o ON o.id = s.organization_id
         JOIN study_scope_requests r ON r.study_id = s.id
         JOIN codeable_concepts c ON c.id = r.scope_code_id
         LEFT JOIN study_patient_scope_consents spsc
                ON spsc.study_patient_id = sp.id AND spsc.scope_code_id = r.scope_code_id
         WHERE sp.patient_id = $1
         ORDER BY s.id, r.id"
    )))
    .bind(patient.id)
    .fetch_all(pool)
    .await?;
    let study_ids: Vec<i64> = requested.iter().map(|scope| scope.study_id).collect();
    let mut data_sources: HashMap<i64, Vec<DataSource>> = HashMap::new();
    for link in data_sources_of_studies(pool, &study_ids).await? {
        data_sources.entry(link.study_id).or_default().push(link.data_source);
    }

    let mut studies: Vec<StudyConsents> = Vec::new();
    let mut studies_pending_consent: Vec<StudyConsents> = Vec::new();
    for scope in requested {
        let answered = scope.consented.is_some();
        let list = if answered { &mut studies } else { &mut studies_pending_consent };
        let consent =
            ScopeConsent { code: scope.code, consented: scope.consented, consented_time: scope.consented_time };
        // rows arrive grouped by study, so a study's entry, if any, is the last one of its list
        match list.last_mut() {
            Some(study) if study.id == scope.study_id => match &mut study.scopes {
                StudyScopes::ScopeConsents(consents) | StudyScopes::PendingScopeConsents(consents) => {
                    consents.push(consent)
                }
            },
            _ => list.push(StudyConsents {
                id: scope.study_id,
                name: scope.study_name,
                description: scope.study_description,
                organization: scope.organization,
                data_sources: data_sources.get(&scope.study_id).cloned().unwrap_or_default(),
                scopes: if answered {
                    StudyScopes::ScopeConsents(vec![consent])
                } else {
                    StudyScopes::PendingScopeConsents(vec![consent])
                },
            }),
        }
    }
    Ok(PatientConsents { patient, consolidated_consented_scopes, studies_pending_consent, studies })
}

/// Deletes every consent row of the patient (`?reset=true`, for development and tests); returns how many.
pub async fn reset_patient_consents(pool: &PgPool, patient_id: i64) -> Result<u64> {
    let deleted = sqlx::query!(
        "DELETE FROM study_patient_scope_consents spsc USING study_patients sp
         WHERE sp.id = spsc.study_patient_id AND sp.patient_id = $1",
        patient_id,
    )
    .execute(pool)
    .await?;
    Ok(deleted.rows_affected())
}

/// Creates, updates or deletes the patient's consent rows named in `changes`, all or none, with one
/// `consented_time` (the transaction's `now()`). Returns the written rows in request order (none for `Delete`).
pub async fn write_patient_consents(
    pool: &PgPool,
    patient_id: i64,
    write: ConsentWrite,
    changes: &[StudyConsentChanges],
) -> Result<Vec<StudyScopeConsent>> {
    let mut tx = pool.begin().await?;
    let mut written: Vec<i64> = Vec::new();
    let mut seen: HashSet<(i64, i64)> = HashSet::new();
    for (study_index, study) in changes.iter().enumerate() {
        let study_path = format!("studyScopeConsents[{study_index}]");
        let study_id = study.study_id;
        let study_patient_id = sqlx::query_scalar!(
            "SELECT id FROM study_patients WHERE study_id = $1 AND patient_id = $2",
            study_id,
            patient_id
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(study_patient_id) = study_patient_id else {
            return Err(Error::Invalid(format!(
                "{study_path}.studyId: patient {patient_id} is not enrolled in study {study_id}"
            )));
        };
        for (scope_index, scope) in study.scope_consents.iter().enumerate() {
            let path = format!("{study_path}.scopeConsents[{scope_index}]");
            let code = format!("{}|{}", scope.coding_system, scope.coding_code);
            let code_id = sqlx::query_scalar!(
                "SELECT id FROM codeable_concepts WHERE coding_system = $1 AND coding_code = $2",
                scope.coding_system,
                scope.coding_code,
            )
            .fetch_optional(&mut *tx)
            .await?;
            let Some(code_id) = code_id else {
                return Err(Error::Invalid(format!("{path}: unknown code {code} (codingSystem|codingCode)")));
            };
            if !seen.insert((study_id, code_id)) {
                return Err(Error::Invalid(format!("{path}: code {code} is listed twice for study {study_id}")));
            }
            if write != ConsentWrite::Delete {
                let requested = sqlx::query_scalar!(
                    r#"SELECT EXISTS (SELECT 1 FROM study_scope_requests WHERE study_id = $1 AND scope_code_id = $2)
                       AS "exists!""#,
                    study_id,
                    code_id,
                )
                .fetch_one(&mut *tx)
                .await?;
                if !requested {
                    return Err(Error::Invalid(format!("{path}: study {study_id} does not request code {code}")));
                }
            }
            let consented = match (write, scope.consented) {
                (ConsentWrite::Delete, _) => None,
                (_, Some(consented)) => Some(consented),
                (_, None) => return Err(Error::Invalid(format!("{path}.consented: this field is required"))),
            };
            let row: Option<i64> = match write {
                ConsentWrite::Create => {
                    sqlx::query_scalar!(
                        r#"INSERT INTO study_patient_scope_consents (study_patient_id, scope_code_id, consented, consented_time)
                         VALUES ($1, $2, $3, now()) ON CONFLICT DO NOTHING RETURNING id AS "id!""#,
                        study_patient_id,
                        code_id,
                        consented,
                    )
                    .fetch_optional(&mut *tx)
                    .await?
                }
                ConsentWrite::Update => {
                    sqlx::query_scalar!(
                        r#"UPDATE study_patient_scope_consents SET consented = $3, consented_time = now()
                         WHERE study_patient_id = $1 AND scope_code_id = $2 RETURNING id AS "id!""#,
                        study_patient_id,
                        code_id,
                        consented,
                    )
                    .fetch_optional(&mut *tx)
                    .await?
                }
                ConsentWrite::Delete => {
                    sqlx::query_scalar!(
                        r#"DELETE FROM study_patient_scope_consents WHERE study_patient_id = $1 AND scope_code_id = $2
                         RETURNING id AS "id!""#,
                        study_patient_id,
                        code_id,
                    )
                    .fetch_optional(&mut *tx)
                    .await?
                }
            };
            match (row, write) {
                (Some(id), _) => written.push(id),
                (None, ConsentWrite::Create) => {
                    return Err(Error::Conflict(format!(
                        "{path}: patient {patient_id} has already answered code {code} for study {study_id}; \
                         use PATCH to change the answer"
                    )));
                }
                (None, ConsentWrite::Update) => {
                    return Err(Error::Invalid(format!(
                        "{path}: patient {patient_id} has not answered code {code} for study {study_id}; \
                         use POST to create the answer"
                    )));
                }
                (None, ConsentWrite::Delete) => {
                    return Err(Error::Invalid(format!(
                        "{path}: patient {patient_id} has not answered code {code} for study {study_id}"
                    )));
                }
            }
        }
    }
    let rows: Vec<StudyScopeConsent> = if write == ConsentWrite::Delete {
        Vec::new()
    } else {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT spsc.id, jsonb_build_object('id', sp.id, 'study', sp.study_id, 'patient', sp.patient_id)
                    AS study_patient, {CODE_JSON} AS scope_code, spsc.consented, spsc.consented_time
             FROM study_patient_scope_consents spsc
             JOIN study_patients sp ON sp.id = spsc.study_patient_id
             JOIN codeable_concepts c ON c.id = spsc.scope_code_id
             WHERE spsc.id = ANY($1) ORDER BY array_position($1, spsc.id)"
        )))
        .bind(&written)
        .fetch_all(&mut *tx)
        .await?
    };
    tx.commit().await?;
    Ok(rows)
}
