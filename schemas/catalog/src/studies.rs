//! Studies: a research project of one organization, the scope codes it requests, the patients enrolled in it, and
//! the patient apps and data sources it uses (jhe-compat §3.4, §5.8).
//!
//! A link that a request names but that is not there (a code the study does not request, a patient who is not
//! enrolled) is `Error::Invalid` naming the request field; a link that already exists is `Error::Conflict`.

use crate::data_sources::{CodeableConcept, DATA_SOURCE_SELECT, DataSource};
use crate::organizations::{OrganizationShort, ROOT_ORGANIZATION_ID};
use crate::patients::{PATIENT_SELECT, Patient};
use crate::{Error, Page, PageRequest, Result};
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, PgPool};
use std::collections::{HashMap, HashSet};

/// A study as read (jhe-compat §5.1): its organization nested in short form.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Study {
    pub id: i64,
    pub name: String,
    pub description: String,
    #[sqlx(json)]
    pub organization: OrganizationShort,
    pub icon_url: Option<String>,
}

/// A study as written and echoed, and as link rows nest it: the organization as its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct StudyRecord {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub organization: i64,
    pub icon_url: Option<String>,
}

/// Which studies a list shows. `visible_to_practitioner` keeps the studies of that practitioner's organizations
/// (`None`: all, for superusers).
#[derive(Debug, Clone, Default)]
pub struct StudyFilter {
    pub visible_to_practitioner: Option<i64>,
    pub organization_id: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewStudy {
    pub name: String,
    pub description: String,
    pub organization_id: i64,
    pub icon_url: Option<String>,
}

/// Changes to a study; `None` leaves a field as it is. The organization of a study never changes: its
/// enrolments and consents belong to that organization.
#[derive(Debug, Clone, Default)]
pub struct StudyChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub icon_url: Option<Option<String>>,
}

/// An enrolment: `study_patients` with both sides nested.
#[derive(Debug, Clone, Serialize)]
pub struct StudyPatient {
    pub id: i64,
    pub study: StudyRecord,
    pub patient: Patient,
}

/// A scope code the study asks its patients to consent to.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct StudyScopeRequest {
    pub id: i64,
    #[sqlx(json)]
    pub study: StudyRecord,
    #[sqlx(json)]
    pub scope_code: CodeableConcept,
}

/// A patient app as a study link shows it: never its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyClientApp {
    pub id: i64,
    pub name: String,
    /// `clientId` on the wire: the camelizer leaves the key `client_id` alone (jhe-compat §2.1).
    #[serde(rename(serialize = "clientId"))]
    pub client_id: String,
    pub invitation_url: String,
}

/// A patient app a study's patients use.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct StudyClient {
    pub id: i64,
    #[sqlx(json)]
    pub study: StudyRecord,
    #[sqlx(json)]
    pub client: StudyClientApp,
}

/// A data source a study collects from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StudyDataSource {
    pub id: i64,
    pub study: StudyRecord,
    pub data_source: DataSource,
}

/// `s` is `studies`, `o` its organization.
const STUDY_SELECT: &str = "SELECT s.id, s.name, s.description, s.icon_url,
        jsonb_build_object('id', o.id, 'name', o.name, 'type', o.type) AS organization
    FROM studies s JOIN organizations o ON o.id = s.organization_id";

/// The `StudyRecord` of `s` (`studies`) as JSON, for link rows.
const STUDY_RECORD_JSON: &str = "jsonb_build_object('id', s.id, 'name', s.name, 'description', s.description,
        'organization', s.organization_id, 'icon_url', s.icon_url)";

const STUDY_FILTER: &str = "($1::bigint IS NULL OR EXISTS (SELECT 1 FROM practitioner_organizations po
        WHERE po.organization_id = s.organization_id AND po.practitioner_id = $1))
    AND ($2::bigint IS NULL OR s.organization_id = $2)";

/// Visible studies ordered by name (id breaks ties, so pages are stable).
pub async fn list_studies(pool: &PgPool, filter: &StudyFilter, page: PageRequest) -> Result<Page<Study>> {
    let count: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM studies s WHERE {STUDY_FILTER}")))
        .bind(filter.visible_to_practitioner)
        .bind(filter.organization_id)
        .fetch_one(pool)
        .await?;
    if count <= page.offset() {
        return Ok(Page { count, items: Vec::new() });
    }
    let items = sqlx::query_as(AssertSqlSafe(format!(
        "{STUDY_SELECT} WHERE {STUDY_FILTER} ORDER BY s.name, s.id LIMIT $3 OFFSET $4"
    )))
    .bind(filter.visible_to_practitioner)
    .bind(filter.organization_id)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(pool)
    .await?;
    Ok(Page { count, items })
}

pub async fn get_study(pool: &PgPool, id: i64) -> Result<Study> {
    sqlx::query_as(AssertSqlSafe(format!("{STUDY_SELECT} WHERE s.id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(Error::NotFound { entity: "Study" })
}

async fn get_study_record(executor: impl sqlx::PgExecutor<'_>, id: i64) -> Result<StudyRecord> {
    sqlx::query_as!(
        StudyRecord,
        "SELECT id, name, description, organization_id AS organization, icon_url FROM studies WHERE id = $1",
        id,
    )
    .fetch_optional(executor)
    .await?
    .ok_or(Error::NotFound { entity: "Study" })
}

/// The studies of one organization in name order (`GET /organizations/{id}/studies`).
pub async fn organization_studies(pool: &PgPool, organization_id: i64) -> Result<Vec<StudyRecord>> {
    Ok(sqlx::query_as!(
        StudyRecord,
        "SELECT id, name, description, organization_id AS organization, icon_url FROM studies
         WHERE organization_id = $1 ORDER BY name, id",
        organization_id,
    )
    .fetch_all(pool)
    .await?)
}

pub async fn create_study(pool: &PgPool, new: &NewStudy) -> Result<StudyRecord> {
    if new.organization_id == ROOT_ORGANIZATION_ID {
        return Err(Error::Invalid("organization: a study cannot belong to the ROOT organization".into()));
    }
    let organization_exists = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM organizations WHERE id = $1) AS "exists!""#,
        new.organization_id,
    )
    .fetch_one(pool)
    .await?;
    if !organization_exists {
        return Err(Error::Invalid(format!("organization: organization {} does not exist", new.organization_id)));
    }
    Ok(sqlx::query_as!(
        StudyRecord,
        "INSERT INTO studies (name, description, organization_id, icon_url) VALUES ($1, $2, $3, $4)
         RETURNING id, name, description, organization_id AS organization, icon_url",
        new.name,
        new.description,
        new.organization_id,
        new.icon_url,
    )
    .fetch_one(pool)
    .await?)
}

pub async fn update_study(pool: &PgPool, id: i64, changes: &StudyChanges) -> Result<StudyRecord> {
    sqlx::query_as!(
        StudyRecord,
        "UPDATE studies SET name = COALESCE($2, name), description = COALESCE($3, description),
            icon_url = CASE WHEN $4 THEN $5 ELSE icon_url END, last_updated = now()
         WHERE id = $1 RETURNING id, name, description, organization_id AS organization, icon_url",
        id,
        changes.name,
        changes.description,
        changes.icon_url.is_some(),
        changes.icon_url.clone().flatten(),
    )
    .fetch_optional(pool)
    .await?
    .ok_or(Error::NotFound { entity: "Study" })
}

/// Deletes a study with its enrolments, consents and links (the foreign keys cascade).
pub async fn delete_study(pool: &PgPool, id: i64) -> Result<()> {
    let deleted = sqlx::query!("DELETE FROM studies WHERE id = $1", id).execute(pool).await?;
    if deleted.rows_affected() == 0 {
        return Err(Error::NotFound { entity: "Study" });
    }
    Ok(())
}

fn id_list(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
}

/// What stands in the way of enrolling or unenrolling each of `patient_ids`, in request order.
struct EnrolmentCheck {
    patient_id: i64,
    exists: bool,
    in_study_organization: bool,
    enrolled: bool,
}

async fn check_enrolments(
    tx: &mut sqlx::PgConnection,
    study: &StudyRecord,
    patient_ids: &[i64],
) -> Result<Vec<EnrolmentCheck>> {
    if patient_ids.is_empty() {
        return Err(Error::Invalid("patientIds: list at least one patient id".into()));
    }
    let mut seen = HashSet::new();
    if let Some(twice) = patient_ids.iter().find(|id| !seen.insert(**id)) {
        return Err(Error::Invalid(format!("patientIds: patient {twice} is listed more than once")));
    }
    let checks = sqlx::query_as!(
        EnrolmentCheck,
        r#"SELECT ids.id AS "patient_id!", p.id IS NOT NULL AS "exists!",
                EXISTS (SELECT 1 FROM patient_organizations po
                        WHERE po.patient_id = ids.id AND po.organization_id = $2) AS "in_study_organization!",
                EXISTS (SELECT 1 FROM study_patients sp WHERE sp.patient_id = ids.id AND sp.study_id = $1)
                    AS "enrolled!"
         FROM unnest($3::bigint[]) WITH ORDINALITY AS ids (id, position)
         LEFT JOIN patients p ON p.id = ids.id
         ORDER BY ids.position"#,
        study.id,
        study.organization,
        patient_ids,
    )
    .fetch_all(&mut *tx)
    .await?;
    // a patient of another organization is answered like one that does not exist
    let outsiders: Vec<i64> =
        checks.iter().filter(|c| !c.exists || !c.in_study_organization).map(|c| c.patient_id).collect();
    if !outsiders.is_empty() {
        return Err(Error::Absent(format!(
            "patientIds: organization {} (which owns study {}) has no patient with id {}",
            study.organization,
            study.id,
            id_list(&outsiders)
        )));
    }
    Ok(checks)
}

/// Enrols patients in a study, all or none. Each must belong to the study's organization and not be enrolled yet.
pub async fn enroll_patients(pool: &PgPool, study_id: i64, patient_ids: &[i64]) -> Result<Vec<StudyPatient>> {
    let mut tx = pool.begin().await?;
    let study = get_study_record(&mut *tx, study_id).await?;
    let checks = check_enrolments(&mut tx, &study, patient_ids).await?;
    let enrolled: Vec<i64> = checks.iter().filter(|c| c.enrolled).map(|c| c.patient_id).collect();
    if !enrolled.is_empty() {
        return Err(Error::Conflict(format!(
            "patientIds: patient {} is already enrolled in study {study_id}",
            id_list(&enrolled)
        )));
    }
    let links = sqlx::query!(
        r#"INSERT INTO study_patients (study_id, patient_id)
         SELECT $1, id FROM unnest($2::bigint[]) WITH ORDINALITY AS ids (id, position) ORDER BY position
         RETURNING id AS "id!", patient_id AS "patient_id!""#,
        study_id,
        patient_ids,
    )
    .fetch_all(&mut *tx)
    .await?;
    let patients: Vec<Patient> = sqlx::query_as(AssertSqlSafe(format!("{PATIENT_SELECT} WHERE p.id = ANY($1)")))
        .bind(patient_ids)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    let mut patients: HashMap<i64, Patient> = patients.into_iter().map(|p| (p.id, p)).collect();
    let mut enrolments = Vec::with_capacity(links.len());
    for link in links {
        let patient = patients.remove(&link.patient_id).ok_or(Error::NotFound { entity: "Patient" })?;
        enrolments.push(StudyPatient { id: link.id, study: study.clone(), patient });
    }
    enrolments.sort_by_key(|enrolment| enrolment.id);
    Ok(enrolments)
}

/// Ends enrolments, all or none; the patients' consents for the study go with them.
pub async fn unenroll_patients(pool: &PgPool, study_id: i64, patient_ids: &[i64]) -> Result<()> {
    let mut tx = pool.begin().await?;
    let study = get_study_record(&mut *tx, study_id).await?;
    let checks = check_enrolments(&mut tx, &study, patient_ids).await?;
    let not_enrolled: Vec<i64> = checks.iter().filter(|c| !c.enrolled).map(|c| c.patient_id).collect();
    if !not_enrolled.is_empty() {
        return Err(Error::Invalid(format!(
            "patientIds: patient {} is not enrolled in study {study_id}",
            id_list(&not_enrolled)
        )));
    }
    sqlx::query!("DELETE FROM study_patients WHERE study_id = $1 AND patient_id = ANY($2)", study_id, patient_ids)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// One kind of link between a study and another row, and how a request names it.
#[derive(Debug, Clone, Copy)]
struct StudyLink {
    /// the link table and its column for the other side
    table: &'static str,
    column: &'static str,
    /// where the other side must exist (table, key column)
    target: (&'static str, &'static str),
    /// the request field and the name of the other side, for messages
    field: &'static str,
    noun: &'static str,
}

const SCOPE_REQUEST_LINK: StudyLink = StudyLink {
    table: "study_scope_requests",
    column: "scope_code_id",
    target: ("codeable_concepts", "id"),
    field: "scopeCodeId",
    noun: "code",
};

/// Only patient apps (clients with an invitation URL) serve a study; practitioners' API keys do not.
const CLIENT_LINK: StudyLink = StudyLink {
    table: "study_clients",
    column: "client_pk",
    target: ("patient_apps", "client_pk"),
    field: "clientId",
    noun: "patient app client",
};

const DATA_SOURCE_LINK: StudyLink = StudyLink {
    table: "study_data_sources",
    column: "data_source_id",
    target: ("data_sources", "id"),
    field: "dataSourceId",
    noun: "data source",
};

/// Links `target_id` to the study; returns the new link row's id.
async fn add_link(pool: &PgPool, link: StudyLink, study_id: i64, target_id: i64) -> Result<i64> {
    let StudyLink { table, column, target: (target_table, target_key), field, noun } = link;
    let mut tx = pool.begin().await?;
    let target_exists: bool = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT EXISTS (SELECT 1 FROM {target_table} WHERE {target_key} = $1)"
    )))
    .bind(target_id)
    .fetch_one(&mut *tx)
    .await?;
    if !target_exists {
        return Err(Error::Invalid(format!("{field}: no {noun} with id {target_id}")));
    }
    let inserted: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
        "INSERT INTO {table} (study_id, {column}) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING id"
    )))
    .bind(study_id)
    .bind(target_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = inserted else {
        return Err(Error::Conflict(format!("{field}: {noun} {target_id} is already linked to study {study_id}")));
    };
    tx.commit().await?;
    Ok(id)
}

async fn remove_link(pool: &PgPool, link: StudyLink, study_id: i64, target_id: i64) -> Result<()> {
    let StudyLink { table, column, field, noun, .. } = link;
    let deleted = sqlx::query(AssertSqlSafe(format!("DELETE FROM {table} WHERE study_id = $1 AND {column} = $2")))
        .bind(study_id)
        .bind(target_id)
        .execute(pool)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(Error::Invalid(format!("{field}: {noun} {target_id} is not linked to study {study_id}")));
    }
    Ok(())
}

fn scope_request_select() -> String {
    format!(
        "SELECT r.id, {STUDY_RECORD_JSON} AS study,
                jsonb_build_object('id', c.id, 'coding_system', c.coding_system, 'coding_code', c.coding_code,
                                   'text', c.text) AS scope_code
         FROM study_scope_requests r JOIN studies s ON s.id = r.study_id
         JOIN codeable_concepts c ON c.id = r.scope_code_id"
    )
}

/// The codes a study requests, in the order they were added.
pub async fn study_scope_requests(pool: &PgPool, study_id: i64) -> Result<Vec<StudyScopeRequest>> {
    Ok(sqlx::query_as(AssertSqlSafe(format!("{} WHERE r.study_id = $1 ORDER BY r.id", scope_request_select())))
        .bind(study_id)
        .fetch_all(pool)
        .await?)
}

pub async fn add_study_scope_request(pool: &PgPool, study_id: i64, scope_code_id: i64) -> Result<StudyScopeRequest> {
    let id = add_link(pool, SCOPE_REQUEST_LINK, study_id, scope_code_id).await?;
    sqlx::query_as(AssertSqlSafe(format!("{} WHERE r.id = $1", scope_request_select())))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(Error::NotFound { entity: "StudyScopeRequest" })
}

/// Stops requesting a code. Consent rows for it stay (hidden, as the study no longer asks for them).
pub async fn remove_study_scope_request(pool: &PgPool, study_id: i64, scope_code_id: i64) -> Result<()> {
    remove_link(pool, SCOPE_REQUEST_LINK, study_id, scope_code_id).await
}

/// The patient apps of a study, in the order they were added.
pub async fn study_clients(pool: &PgPool, study_id: i64) -> Result<Vec<StudyClient>> {
    Ok(sqlx::query_as(AssertSqlSafe(format!(
        "SELECT l.id, {STUDY_RECORD_JSON} AS study,
                jsonb_build_object('id', c.id, 'name', c.name, 'client_id', c.client_id,
                                   'invitation_url', a.invitation_url) AS client
         FROM study_clients l JOIN studies s ON s.id = l.study_id
         JOIN oauth_clients c ON c.id = l.client_pk JOIN patient_apps a ON a.client_pk = c.id
         WHERE l.study_id = $1 ORDER BY l.id"
    )))
    .bind(study_id)
    .fetch_all(pool)
    .await?)
}

/// `client_pk` is the `oauth_clients` row id (the REST `clientId` of a link request), not the OAuth client id.
pub async fn add_study_client(pool: &PgPool, study_id: i64, client_pk: i64) -> Result<()> {
    add_link(pool, CLIENT_LINK, study_id, client_pk).await.map(drop)
}

pub async fn remove_study_client(pool: &PgPool, study_id: i64, client_pk: i64) -> Result<()> {
    remove_link(pool, CLIENT_LINK, study_id, client_pk).await
}

/// A data source linked to a study.
#[derive(sqlx::FromRow)]
pub(crate) struct LinkedDataSource {
    pub(crate) link_id: i64,
    pub(crate) study_id: i64,
    #[sqlx(flatten)]
    pub(crate) data_source: DataSource,
}

/// The data sources of `study_ids` with their supported scopes, in data source name order (as the reference
/// lists them).
pub(crate) async fn data_sources_of_studies(pool: &PgPool, study_ids: &[i64]) -> Result<Vec<LinkedDataSource>> {
    Ok(sqlx::query_as(AssertSqlSafe(format!(
        "SELECT l.id AS link_id, l.study_id, ds.* FROM study_data_sources l
         JOIN ({DATA_SOURCE_SELECT}) ds ON ds.id = l.data_source_id
         WHERE l.study_id = ANY($1) ORDER BY ds.name, ds.id"
    )))
    .bind(study_ids)
    .fetch_all(pool)
    .await?)
}

/// The data sources of a study, in the order they were added.
pub async fn study_data_sources(pool: &PgPool, study_id: i64) -> Result<Vec<StudyDataSource>> {
    let study = get_study_record(pool, study_id).await?;
    let mut links: Vec<StudyDataSource> = data_sources_of_studies(pool, &[study_id])
        .await?
        .into_iter()
        .map(|link| StudyDataSource { id: link.link_id, study: study.clone(), data_source: link.data_source })
        .collect();
    links.sort_by_key(|link| link.id);
    Ok(links)
}

pub async fn add_study_data_source(pool: &PgPool, study_id: i64, data_source_id: i64) -> Result<()> {
    add_link(pool, DATA_SOURCE_LINK, study_id, data_source_id).await.map(drop)
}

pub async fn remove_study_data_source(pool: &PgPool, study_id: i64, data_source_id: i64) -> Result<()> {
    remove_link(pool, DATA_SOURCE_LINK, study_id, data_source_id).await
}
