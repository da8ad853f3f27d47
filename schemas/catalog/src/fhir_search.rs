//! FHIR read and search over the Postgres-backed resources (jhe-compat §6.3–§6.4): Patient (patients), Group
//! (studies), Organization, Practitioner and Device (data sources). The API parses and authorizes a request into a
//! [`FhirQuery`]; this module turns it into one SQL statement per page.
//!
//! What a caller sees is decided here, by [`FhirAccess`], inside the same statement that counts and pages, so
//! `total` never includes rows the caller may not see:
//! * a practitioner sees the resources around their organizations: patients in them, studies owned by them, data
//!   sources linked to those studies, the organizations themselves, and the practitioners who share one;
//! * a patient sees themself, the studies they are enrolled in, the data sources of those studies, their
//!   organizations and the practitioners of those organizations;
//! * a superuser sees everything.

use crate::{Error, PageRequest, Result};
use chrono::{DateTime, NaiveDate, Utc};
use jhe_schemas::Identifier;
use jhe_schemas::fhir::render::{DataSourceRow, OrganizationRow, PatientRow, PractitionerRow, StudyRow};
use serde::Deserialize;
use sqlx::{PgPool, Postgres, QueryBuilder};

/// The five resource types stored in Postgres.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FhirResourceKind {
    Patient,
    Group,
    Organization,
    Practitioner,
    Device,
}

impl FhirResourceKind {
    pub fn from_type_name(name: &str) -> Option<Self> {
        Some(match name {
            "Patient" => Self::Patient,
            "Group" => Self::Group,
            "Organization" => Self::Organization,
            "Practitioner" => Self::Practitioner,
            "Device" => Self::Device,
            _ => return None,
        })
    }

    pub fn type_name(self) -> &'static str {
        match self {
            Self::Patient => "Patient",
            Self::Group => "Group",
            Self::Organization => "Organization",
            Self::Practitioner => "Practitioner",
            Self::Device => "Device",
        }
    }

    fn table(self) -> &'static str {
        match self {
            Self::Patient => "patients",
            Self::Group => "studies",
            Self::Organization => "organizations",
            Self::Practitioner => "practitioners",
            Self::Device => "data_sources",
        }
    }
}

/// The rows a caller may see, before any search parameter narrows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FhirAccess {
    /// A superuser.
    Everything,
    /// A practitioner: their organizations.
    Organizations(Vec<i64>),
    /// A patient user: their own patient id.
    Patient(i64),
    /// A user who is neither (sees nothing).
    Nothing,
}

/// A FHIR prefix of a date search (`eq` when none is given). `sa`/`eb` map to `gt`/`lt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
}

/// A date search value: the comparator and the implicit range `[start, end)` the value denotes at its precision
/// (`2025-01-01` is that whole UTC day, `2025-01-01T10:00:00Z` that second).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateBound<T> {
    pub comparator: Comparator,
    pub start: T,
    pub end: T,
}

/// A FHIR string search: case-insensitive prefix by default, `:exact` and `:contains` modifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextMatch {
    StartsWith(String),
    Exact(String),
    Contains(String),
}

/// The text a string parameter searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextField {
    /// A person's family name.
    Family,
    /// A person's given name.
    Given,
    /// A person's family or given name; the `name` of a study, organization or data source.
    Name,
}

/// A token (`[system|]value`): `None` parts match anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenMatch {
    pub system: Option<String>,
    pub value: Option<String>,
}

/// One search condition; a query's conditions are ANDed, the alternatives inside one are ORed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FhirFilter {
    /// `_id`, or a read: any of these ids.
    Ids(Vec<i64>),
    /// `patient=`: resources of this patient (the patient, their studies, organizations, …).
    Patient(i64),
    /// `patient._has:Group:member:_id=`: resources of this study's patients.
    Study(i64),
    /// `patient.organization=`: resources of this organization.
    Organization(i64),
    /// `identifier` / `patient.identifier`: resources of a patient with one of these external identifiers.
    PatientIdentifier(Vec<TokenMatch>),
    /// Practitioner `identifier`: the practitioner's own identifier is one of these values.
    PractitionerIdentifier(Vec<String>),
    /// `_lastUpdated`.
    LastUpdated(DateBound<DateTime<Utc>>),
    /// Patient `birthdate`.
    BirthDate(DateBound<NaiveDate>),
    /// A string parameter: any of the matches.
    Text { field: TextField, any_of: Vec<TextMatch> },
    /// Matches nothing (a `_source` elsewhere, a constant that differs, an `_id` of the wrong shape).
    Nothing,
}

/// A `_sort` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortField {
    LastUpdated,
    Id,
    /// Family then given name for people; the name column otherwise.
    Name,
    Family,
    Given,
    BirthDate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    pub field: SortField,
    pub descending: bool,
}

/// A search as the API authorized it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirQuery {
    pub access: FhirAccess,
    pub filters: Vec<FhirFilter>,
    /// Empty: the type's natural order (names, then id). The id always breaks ties.
    pub sort: Vec<SortKey>,
}

/// The rows of one page, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum FhirRows {
    Patients(Vec<PatientRow>),
    Groups(Vec<StudyRow>),
    Organizations(Vec<OrganizationRow>),
    Practitioners(Vec<PractitionerRow>),
    Devices(Vec<DataSourceRow>),
}

impl FhirRows {
    pub fn len(&self) -> usize {
        match self {
            FhirRows::Patients(rows) => rows.len(),
            FhirRows::Groups(rows) => rows.len(),
            FhirRows::Organizations(rows) => rows.len(),
            FhirRows::Practitioners(rows) => rows.len(),
            FhirRows::Devices(rows) => rows.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One page of a search and the number of matches over all pages.
#[derive(Debug, Clone, PartialEq)]
pub struct FhirPage {
    pub total: i64,
    pub rows: FhirRows,
}

/// The number of resources of `kind` matching `query`.
pub async fn fhir_count(pool: &PgPool, kind: FhirResourceKind, query: &FhirQuery) -> Result<i64> {
    let mut sql = QueryBuilder::new(format!("SELECT count(*) FROM {} t WHERE ", kind.table()));
    push_conditions(&mut sql, kind, query)?;
    Ok(sql.build_query_scalar().fetch_one(pool).await?)
}

/// One page of the resources of `kind` matching `query`, with the total, in one statement (a second one counts
/// only when the page lies past the end).
pub async fn fhir_search(
    pool: &PgPool,
    kind: FhirResourceKind,
    query: &FhirQuery,
    page: PageRequest,
) -> Result<FhirPage> {
    let order = order_by(kind, &query.sort)?;
    // the page's ids first (the window count sees every match, LIMIT applies after it), then their projection
    let mut sql = QueryBuilder::new(format!(
        "WITH matched AS (SELECT t.id, count(*) OVER () AS total FROM {} t WHERE ",
        kind.table()
    ));
    push_conditions(&mut sql, kind, query)?;
    sql.push(format!(" ORDER BY {order} LIMIT "))
        .push_bind(page.limit())
        .push(" OFFSET ")
        .push_bind(page.offset())
        .push(") ")
        .push(projection(kind))
        .push(format!(" ORDER BY {order}"));
    let (total, rows) = match kind {
        FhirResourceKind::Patient => {
            let rows: Vec<PatientDbRow> = sql.build_query_as().fetch_all(pool).await?;
            (rows.first().map(|r| r.total), FhirRows::Patients(rows.into_iter().map(PatientDbRow::into_row).collect()))
        }
        FhirResourceKind::Practitioner => {
            let rows: Vec<PersonDbRow> = sql.build_query_as().fetch_all(pool).await?;
            let total = rows.first().map(|r| r.total);
            let rows = rows
                .into_iter()
                .map(|r| PractitionerRow {
                    id: r.id,
                    last_updated_micros: r.last_updated.timestamp_micros(),
                    name_family: r.name_family.unwrap_or_default(),
                    name_given: r.name_given.unwrap_or_default(),
                })
                .collect();
            (total, FhirRows::Practitioners(rows))
        }
        FhirResourceKind::Group | FhirResourceKind::Organization | FhirResourceKind::Device => {
            let rows: Vec<NamedDbRow> = sql.build_query_as().fetch_all(pool).await?;
            let total = rows.first().map(|r| r.total);
            (total, named_rows(kind, rows))
        }
    };
    let total = match total {
        Some(total) => total,
        None if page.offset() == 0 => 0,
        None => fhir_count(pool, kind, query).await?,
    };
    Ok(FhirPage { total, rows })
}

/// The organization owning a study, if the study exists (to authorize `patient._has:Group:member:_id`).
pub async fn fhir_study_organization_id(pool: &PgPool, study_id: i64) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar::<_, i64>("SELECT organization_id FROM studies WHERE id = $1")
        .bind(study_id)
        .fetch_optional(pool)
        .await?)
}

#[derive(sqlx::FromRow)]
struct PatientDbRow {
    total: i64,
    id: i64,
    last_updated: DateTime<Utc>,
    name_family: Option<String>,
    name_given: Option<String>,
    birth_date: Option<NaiveDate>,
    telecom_phone: Option<String>,
    email: Option<String>,
    identifiers: sqlx::types::Json<Vec<IdentifierJson>>,
}

#[derive(Deserialize)]
struct IdentifierJson {
    system: String,
    value: String,
}

impl PatientDbRow {
    fn into_row(self) -> PatientRow {
        PatientRow {
            id: self.id,
            last_updated_micros: self.last_updated.timestamp_micros(),
            identifiers: self
                .identifiers
                .0
                .into_iter()
                .map(|identifier| Identifier { system: identifier.system, value: identifier.value })
                .collect(),
            name_family: self.name_family.unwrap_or_default(),
            name_given: self.name_given.unwrap_or_default(),
            birth_date: self.birth_date,
            telecom_phone: self.telecom_phone,
            email: self.email,
        }
    }
}

#[derive(sqlx::FromRow)]
struct PersonDbRow {
    total: i64,
    id: i64,
    last_updated: DateTime<Utc>,
    name_family: Option<String>,
    name_given: Option<String>,
}

#[derive(sqlx::FromRow)]
struct NamedDbRow {
    total: i64,
    id: i64,
    last_updated: DateTime<Utc>,
    name: Option<String>,
}

fn named_rows(kind: FhirResourceKind, rows: Vec<NamedDbRow>) -> FhirRows {
    let micros = |row: &NamedDbRow| row.last_updated.timestamp_micros();
    match kind {
        FhirResourceKind::Group => FhirRows::Groups(
            rows.into_iter()
                .map(|r| StudyRow { id: r.id, last_updated_micros: micros(&r), name: r.name.unwrap_or_default() })
                .collect(),
        ),
        FhirResourceKind::Organization => FhirRows::Organizations(
            rows.into_iter()
                .map(|r| OrganizationRow {
                    id: r.id,
                    last_updated_micros: micros(&r),
                    name: r.name.unwrap_or_default(),
                })
                .collect(),
        ),
        _ => FhirRows::Devices(
            rows.into_iter()
                .map(|r| DataSourceRow { id: r.id, last_updated_micros: micros(&r), name: r.name })
                .collect(),
        ),
    }
}

/// The columns each row type reads, from `matched m` joined to the table as `t`.
fn projection(kind: FhirResourceKind) -> &'static str {
    match kind {
        FhirResourceKind::Patient => {
            "SELECT m.total, t.id, t.last_updated, t.name_family, t.name_given, t.birth_date, t.telecom_phone,
                u.email,
                COALESCE((SELECT jsonb_agg(jsonb_build_object('system', i.system, 'value', i.value) ORDER BY i.id)
                          FROM patient_identifiers i WHERE i.patient_id = t.id), '[]'::jsonb) AS identifiers
             FROM matched m JOIN patients t ON t.id = m.id LEFT JOIN users u ON u.id = t.user_id"
        }
        FhirResourceKind::Practitioner => {
            "SELECT m.total, t.id, t.last_updated, t.name_family, t.name_given
             FROM matched m JOIN practitioners t ON t.id = m.id"
        }
        FhirResourceKind::Group => {
            "SELECT m.total, t.id, t.last_updated, t.name FROM matched m JOIN studies t ON t.id = m.id"
        }
        FhirResourceKind::Organization => {
            "SELECT m.total, t.id, t.last_updated, t.name FROM matched m JOIN organizations t ON t.id = m.id"
        }
        FhirResourceKind::Device => {
            "SELECT m.total, t.id, t.last_updated, t.name FROM matched m JOIN data_sources t ON t.id = m.id"
        }
    }
}

/// `ORDER BY` over `t`: the sort keys (NULLs last either way, as the reference sorts dates), then the id.
fn order_by(kind: FhirResourceKind, sort: &[SortKey]) -> Result<String> {
    let person = matches!(kind, FhirResourceKind::Patient | FhirResourceKind::Practitioner);
    let natural = [SortKey { field: SortField::Name, descending: false }];
    let keys = if sort.is_empty() { &natural[..] } else { sort };
    let mut terms = Vec::new();
    for key in keys {
        let columns: &[&str] = match key.field {
            SortField::LastUpdated => &["t.last_updated"],
            SortField::Id => &["t.id"],
            SortField::Name if person => &["t.name_family", "t.name_given"],
            SortField::Name => &["t.name"],
            SortField::Family if person => &["t.name_family"],
            SortField::Given if person => &["t.name_given"],
            SortField::BirthDate if kind == FhirResourceKind::Patient => &["t.birth_date"],
            other => return Err(inapplicable(kind, &format!("_sort {other:?}"))),
        };
        let direction = if key.descending { "DESC" } else { "ASC" };
        terms.extend(columns.iter().map(|column| format!("{column} {direction} NULLS LAST")));
    }
    if !keys.iter().any(|key| key.field == SortField::Id) {
        terms.push("t.id ASC".to_owned());
    }
    Ok(terms.join(", "))
}

fn inapplicable(kind: FhirResourceKind, what: &str) -> Error {
    Error::Invalid(format!("{what} does not apply to {}", kind.type_name()))
}

/// `WHERE` conditions over `t` (the kind's table): the caller's access, then every filter.
fn push_conditions(sql: &mut QueryBuilder<Postgres>, kind: FhirResourceKind, query: &FhirQuery) -> Result<()> {
    push_access(sql, kind, &query.access);
    for filter in &query.filters {
        sql.push(" AND ");
        push_filter(sql, kind, filter)?;
    }
    Ok(())
}

fn push_access(sql: &mut QueryBuilder<Postgres>, kind: FhirResourceKind, access: &FhirAccess) {
    use FhirResourceKind as K;
    match access {
        FhirAccess::Everything => {
            sql.push("TRUE");
        }
        FhirAccess::Nothing => {
            sql.push("FALSE");
        }
        FhirAccess::Organizations(organization_ids) => {
            let ids = organization_ids.clone();
            match kind {
                K::Patient => sql
                    .push("EXISTS (SELECT 1 FROM patient_organizations a WHERE a.patient_id = t.id AND a.organization_id = ANY(")
                    .push_bind(ids)
                    .push("))"),
                K::Group => sql.push("t.organization_id = ANY(").push_bind(ids).push(")"),
                K::Organization => sql.push("t.id = ANY(").push_bind(ids).push(")"),
                K::Practitioner => sql
                    .push("EXISTS (SELECT 1 FROM practitioner_organizations a WHERE a.practitioner_id = t.id AND a.organization_id = ANY(")
                    .push_bind(ids)
                    .push("))"),
                K::Device => sql
                    .push(
                        "EXISTS (SELECT 1 FROM study_data_sources a JOIN studies s ON s.id = a.study_id
                         WHERE a.data_source_id = t.id AND s.organization_id = ANY(",
                    )
                    .push_bind(ids)
                    .push("))"),
            };
        }
        FhirAccess::Patient(patient_id) => push_of_patient(sql, kind, *patient_id),
    }
}

/// Resources of one patient: the patient, the studies they are enrolled in, the data sources of those studies,
/// their organizations, the practitioners of those organizations.
fn push_of_patient(sql: &mut QueryBuilder<Postgres>, kind: FhirResourceKind, patient_id: i64) {
    use FhirResourceKind as K;
    match kind {
        K::Patient => sql.push("t.id = ").push_bind(patient_id),
        K::Group => sql
            .push("EXISTS (SELECT 1 FROM study_patients sp WHERE sp.study_id = t.id AND sp.patient_id = ")
            .push_bind(patient_id)
            .push(")"),
        K::Organization => sql
            .push("EXISTS (SELECT 1 FROM patient_organizations po WHERE po.organization_id = t.id AND po.patient_id = ")
            .push_bind(patient_id)
            .push(")"),
        K::Practitioner => sql
            .push(
                "EXISTS (SELECT 1 FROM practitioner_organizations pr
                 JOIN patient_organizations po ON po.organization_id = pr.organization_id
                 WHERE pr.practitioner_id = t.id AND po.patient_id = ",
            )
            .push_bind(patient_id)
            .push(")"),
        K::Device => sql
            .push(
                "EXISTS (SELECT 1 FROM study_data_sources sd JOIN study_patients sp ON sp.study_id = sd.study_id
                 WHERE sd.data_source_id = t.id AND sp.patient_id = ",
            )
            .push_bind(patient_id)
            .push(")"),
    };
}

/// `(patient-id expression) IN` the patients with one of `tokens` as an external identifier, as SQL over the
/// patient ids each kind relates to.
fn push_patient_identifier(sql: &mut QueryBuilder<Postgres>, kind: FhirResourceKind, tokens: &[TokenMatch]) {
    use FhirResourceKind as K;
    // the patients of the resource `t`, as `<from and where> AND` so the identifier test can follow
    let related = match kind {
        K::Patient => "SELECT 1 FROM patient_identifiers i WHERE i.patient_id = t.id AND ",
        K::Group => {
            "SELECT 1 FROM study_patients sp JOIN patient_identifiers i ON i.patient_id = sp.patient_id
             WHERE sp.study_id = t.id AND "
        }
        K::Organization => {
            "SELECT 1 FROM patient_organizations po JOIN patient_identifiers i ON i.patient_id = po.patient_id
             WHERE po.organization_id = t.id AND "
        }
        K::Practitioner => {
            "SELECT 1 FROM practitioner_organizations pr
             JOIN patient_organizations po ON po.organization_id = pr.organization_id
             JOIN patient_identifiers i ON i.patient_id = po.patient_id
             WHERE pr.practitioner_id = t.id AND "
        }
        K::Device => {
            "SELECT 1 FROM study_data_sources sd JOIN study_patients sp ON sp.study_id = sd.study_id
             JOIN patient_identifiers i ON i.patient_id = sp.patient_id
             WHERE sd.data_source_id = t.id AND "
        }
    };
    sql.push("EXISTS (").push(related).push("(");
    for (index, token) in tokens.iter().enumerate() {
        if index > 0 {
            sql.push(" OR ");
        }
        sql.push("(TRUE");
        if let Some(system) = &token.system {
            sql.push(" AND i.system = ").push_bind(system.clone());
        }
        if let Some(value) = &token.value {
            sql.push(" AND i.value = ").push_bind(value.clone());
        }
        sql.push(")");
    }
    if tokens.is_empty() {
        sql.push("FALSE");
    }
    sql.push("))");
}

fn push_filter(sql: &mut QueryBuilder<Postgres>, kind: FhirResourceKind, filter: &FhirFilter) -> Result<()> {
    use FhirResourceKind as K;
    match filter {
        FhirFilter::Nothing => {
            sql.push("FALSE");
        }
        FhirFilter::Ids(ids) => {
            sql.push("t.id = ANY(").push_bind(ids.clone()).push(")");
        }
        FhirFilter::Patient(patient_id) => push_of_patient(sql, kind, *patient_id),
        FhirFilter::Study(study_id) => {
            match kind {
                K::Patient => sql
                    .push("EXISTS (SELECT 1 FROM study_patients sp WHERE sp.patient_id = t.id AND sp.study_id = ")
                    .push_bind(*study_id)
                    .push(")"),
                K::Group => sql.push("t.id = ").push_bind(*study_id),
                K::Organization => sql
                    .push("EXISTS (SELECT 1 FROM studies s WHERE s.organization_id = t.id AND s.id = ")
                    .push_bind(*study_id)
                    .push(")"),
                K::Practitioner => sql
                    .push(
                        "EXISTS (SELECT 1 FROM practitioner_organizations pr JOIN studies s
                         ON s.organization_id = pr.organization_id WHERE pr.practitioner_id = t.id AND s.id = ",
                    )
                    .push_bind(*study_id)
                    .push(")"),
                K::Device => sql
                    .push(
                        "EXISTS (SELECT 1 FROM study_data_sources sd WHERE sd.data_source_id = t.id AND sd.study_id = ",
                    )
                    .push_bind(*study_id)
                    .push(")"),
            };
        }
        FhirFilter::Organization(organization_id) => {
            match kind {
                K::Patient => sql
                    .push(
                        "EXISTS (SELECT 1 FROM patient_organizations po WHERE po.patient_id = t.id
                         AND po.organization_id = ",
                    )
                    .push_bind(*organization_id)
                    .push(")"),
                K::Group => sql.push("t.organization_id = ").push_bind(*organization_id),
                K::Organization => sql.push("t.id = ").push_bind(*organization_id),
                K::Practitioner => sql
                    .push(
                        "EXISTS (SELECT 1 FROM practitioner_organizations pr WHERE pr.practitioner_id = t.id
                         AND pr.organization_id = ",
                    )
                    .push_bind(*organization_id)
                    .push(")"),
                K::Device => sql
                    .push(
                        "EXISTS (SELECT 1 FROM study_data_sources sd JOIN studies s ON s.id = sd.study_id
                         WHERE sd.data_source_id = t.id AND s.organization_id = ",
                    )
                    .push_bind(*organization_id)
                    .push(")"),
            };
        }
        FhirFilter::PatientIdentifier(tokens) => push_patient_identifier(sql, kind, tokens),
        FhirFilter::PractitionerIdentifier(values) => {
            if kind != K::Practitioner {
                return Err(inapplicable(kind, "a practitioner identifier"));
            }
            sql.push("t.identifier = ANY(").push_bind(values.clone()).push(")");
        }
        FhirFilter::LastUpdated(bound) => push_bound(sql, "t.last_updated", bound),
        FhirFilter::BirthDate(bound) => {
            if kind != K::Patient {
                return Err(inapplicable(kind, "birthdate"));
            }
            push_bound(sql, "t.birth_date", bound);
        }
        FhirFilter::Text { field, any_of } => {
            let person = matches!(kind, K::Patient | K::Practitioner);
            let columns: &[&str] = match field {
                TextField::Family if person => &["t.name_family"],
                TextField::Given if person => &["t.name_given"],
                TextField::Name if person => &["t.name_family", "t.name_given"],
                TextField::Name => &["t.name"],
                other => return Err(inapplicable(kind, &format!("{other:?}"))),
            };
            sql.push("(FALSE");
            for text in any_of {
                for column in columns {
                    sql.push(" OR ");
                    push_text(sql, column, text);
                }
            }
            sql.push(")");
        }
    }
    Ok(())
}

/// `column` compared with the implicit range of a date value (FHIR R5 §3.2.1.5.6 prefixes).
fn push_bound<T>(sql: &mut QueryBuilder<Postgres>, column: &str, bound: &DateBound<T>)
where
    T: Clone + for<'q> sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres>,
{
    let (start, end) = (bound.start.clone(), bound.end.clone());
    match bound.comparator {
        Comparator::Eq => sql
            .push(format!("({column} >= "))
            .push_bind(start)
            .push(format!(" AND {column} < "))
            .push_bind(end)
            .push(")"),
        Comparator::Ne => sql
            .push(format!("({column} < "))
            .push_bind(start)
            .push(format!(" OR {column} >= "))
            .push_bind(end)
            .push(")"),
        Comparator::Ge => sql.push(format!("{column} >= ")).push_bind(start),
        Comparator::Gt => sql.push(format!("{column} >= ")).push_bind(end),
        Comparator::Le => sql.push(format!("{column} < ")).push_bind(end),
        Comparator::Lt => sql.push(format!("{column} < ")).push_bind(start),
    };
}

/// Escapes `LIKE` wildcards so the value matches literally (backslash is Postgres' default escape).
fn like_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn push_text(sql: &mut QueryBuilder<Postgres>, column: &str, text: &TextMatch) {
    match text {
        TextMatch::StartsWith(prefix) => {
            sql.push(format!("{column} ILIKE ")).push_bind(format!("{}%", like_literal(prefix)))
        }
        TextMatch::Contains(part) => {
            sql.push(format!("{column} ILIKE ")).push_bind(format!("%{}%", like_literal(part)))
        }
        TextMatch::Exact(value) => sql.push(format!("{column} = ")).push_bind(value.clone()),
    };
}

#[cfg(test)]
#[path = "fhir_search_tests.rs"]
mod tests;
