//! The demo seed (`jhe seed`): the people, organizations, studies and consents of the reference Exchange's demo,
//! in the same id ranges, so that docs and notebooks written against the reference's demo work against jhe.
//!
//! Everything runs in one transaction and is idempotent by natural keys: entity rows are inserted with
//! `INSERT … SELECT … WHERE NOT EXISTS` (which, unlike `ON CONFLICT`, draws no id when the row exists, so the id
//! ranges stay dense), link rows with `ON CONFLICT DO NOTHING`. Existing rows are never modified.
//! The example observations of the reference demo come with the ingestion pipeline, not from this seed.

use crate::passwords::hash_password;
use crate::{Error, Result};
use serde_json::{Value, json};
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, PgPool, Postgres};
use std::collections::HashMap;

/// The password of every seeded account (as in the reference demo).
pub const SEED_PASSWORD: &str = "Jhe1234!";

/// How many rows of each kind a seed run newly inserted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedReport {
    pub settings: u64,
    pub codes: u64,
    pub data_sources: u64,
    pub data_source_scopes: u64,
    pub oauth_clients: u64,
    pub patient_apps: u64,
    pub client_data_sources: u64,
    pub organizations: u64,
    pub studies: u64,
    pub study_scope_requests: u64,
    pub study_data_sources: u64,
    pub study_clients: u64,
    pub users: u64,
    pub practitioners: u64,
    pub practitioner_organizations: u64,
    pub patients: u64,
    pub patient_organizations: u64,
    pub patient_identifiers: u64,
    pub study_patients: u64,
    pub consents: u64,
}

impl SeedReport {
    /// All rows inserted; 0 when the demo data was already complete.
    pub fn total(&self) -> u64 {
        [
            self.settings,
            self.codes,
            self.data_sources,
            self.data_source_scopes,
            self.oauth_clients,
            self.patient_apps,
            self.client_data_sources,
            self.organizations,
            self.studies,
            self.study_scope_requests,
            self.study_data_sources,
            self.study_clients,
            self.users,
            self.practitioners,
            self.practitioner_organizations,
            self.patients,
            self.patient_organizations,
            self.patient_identifiers,
            self.study_patients,
            self.consents,
        ]
        .iter()
        .sum()
    }
}

const OMH: &str = "https://w3id.org/openmhealth";

/// (coding_system, coding_code, text) in the reference's order, so that `omh:blood-glucose:4.0` is 50001.
const CODES: [(&str, &str, &str); 16] = [
    (OMH, "omh:blood-glucose:4.0", "Blood glucose"),
    (OMH, "omh:blood-pressure:4.0", "Blood pressure"),
    (OMH, "omh:body-temperature:4.0", "Body temperature"),
    (OMH, "omh:heart-rate:2.0", "Heart Rate"),
    (OMH, "omh:oxygen-saturation:2.0", "Oxygen saturation"),
    (OMH, "omh:respiratory-rate:2.0", "Respiratory rate"),
    (OMH, "omh:rr-interval:1.0", "RR Interval"),
    (OMH, "omh:body-weight:3.0", "Body weight"),
    (OMH, "omh:forced-vital-capacity:1.0", "Forced vital capacity"),
    (OMH, "omh:forced-expiratory-volume-1-second:1.0", "Forced expiratory volume 1 second"),
    ("http://hl7.org/fhir/resource-types", "QuestionnaireResponse", "FHIR QuestionnaireResponse"),
    (OMH, "omh:physical-activity:1.2", "Physical activity"),
    (OMH, "omh:step-count:3.0", "Step count"),
    ("https://w3id.org/ieee1752", "ieee:sleep-stage-summary:1.0", "Sleep stage summary"),
    (OMH, "omh:sleep-episode:1.1", "Sleep episode"),
    (OMH, "omh:sleep-duration:2.0", "Sleep duration"),
];

const BG: &str = "omh:blood-glucose:4.0";
const BP: &str = "omh:blood-pressure:4.0";
const BT: &str = "omh:body-temperature:4.0";
const HR: &str = "omh:heart-rate:2.0";
const O2: &str = "omh:oxygen-saturation:2.0";
const QR: &str = "QuestionnaireResponse";

/// (name, type, supported scope codes)
const DATA_SOURCES: [(&str, &str, &[&str]); 6] = [
    ("CareX", "personal_device", &[BP, HR]),
    ("Dexcom", "personal_device", &[BG]),
    ("iHealth", "personal_device", &[BT, HR]),
    ("Oura", "personal_device", &[HR]),
    ("Questionnaire", "patient_app", &[QR]),
    // clinical records pulled through a Patient Access API are FHIR resources, not OMH scopes
    ("Patient Access API", "medical_device", &[]),
];

/// The OAuth public clients the demo seeds. The reference generates random client ids; jhe uses stable,
/// readable ones so that docs and tests can name them.
struct Client {
    client_id: &'static str,
    name: &'static str,
    /// `Some` marks a patient app (a `patient_apps` row); `CODE` is replaced when a link is issued.
    invitation_url: Option<&'static str>,
    aux_data: fn() -> Value,
    data_sources: &'static [&'static str],
}

const CAREX: &str = "carex";
const COMMONHEALTH: &str = "commonhealth";
const PATIENT_ACCESS: &str = "patient-access";

const CLIENTS: [Client; 4] = [
    Client {
        client_id: CAREX,
        name: "CareX",
        invitation_url: Some("https://carex.ai/invitation/CODE"),
        aux_data: empty_object,
        data_sources: &["CareX", "Questionnaire"],
    },
    Client {
        client_id: COMMONHEALTH,
        name: "CommonHealth",
        invitation_url: Some("https://commonhealth.tcp.org?invitation=CODE"),
        aux_data: empty_object,
        data_sources: &["Dexcom", "iHealth"],
    },
    Client {
        client_id: PATIENT_ACCESS,
        name: "Patient Access",
        invitation_url: Some("http://localhost:8001/clients/patient-access/?code=CODE"),
        aux_data: patient_access_aux_data,
        data_sources: &["Patient Access API"],
    },
    // the web UI's own client; the SPA finds its client id by this name
    Client {
        client_id: "jhe-admin-ui",
        name: "JHE Admin UI",
        invitation_url: None,
        aux_data: empty_object,
        data_sources: &[],
    },
];

fn empty_object() -> Value {
    json!({})
}

/// The client id of the reference's SMART app registration at Epic's sandbox ("JupyterHealth Exchange - USCDI v3").
const EPIC_SANDBOX_CLIENT_ID: &str = "77849e74-8e2a-4c2f-826c-bdbef6da3357";

/// What the Patient Access client needs to talk to Epic (as the reference seeds it); the hospital the patient
/// picks supplies the issuer.
fn patient_access_aux_data() -> Value {
    json!({
        "client_id": EPIC_SANDBOX_CLIENT_ID,
        "scopes": "openid profile launch/patient patient/Patient.read patient/Observation.read \
                   patient/Condition.read patient/MedicationRequest.read patient/MedicationDispense.read \
                   patient/AllergyIntolerance.read patient/Immunization.read patient/Procedure.read \
                   patient/DiagnosticReport.read patient/DocumentReference.read patient/Encounter.read \
                   patient/CarePlan.read patient/CareTeam.read patient/Goal.read patient/ServiceRequest.read \
                   patient/Device.read patient/QuestionnaireResponse.read",
    })
}

const ROOT: &str = "ROOT";
const LIFESPAN_LAB: &str = "Lifespan Lab";
const CARDIOLOGY_DIVISION: &str = "Cardiology Division";
const NEPTUNIAN_PULSE_LAB: &str = "Neptunian Pulse Lab";
const COSMIC_CARDIO_LAB: &str = "Cosmic Cardio Lab";

/// (name, type, part of) — parents before children, in the reference's order.
const ORGANIZATIONS: [(&str, &str, &str); 8] = [
    ("Planetary Research Institute", "edu", ROOT),
    ("Saturn School of Data Science", "team", "Planetary Research Institute"),
    (LIFESPAN_LAB, "laboratory", "Saturn School of Data Science"),
    ("Neptune Health System", "prov", ROOT),
    ("Department of Medicine", "dept", "Neptune Health System"),
    (CARDIOLOGY_DIVISION, "dept", "Department of Medicine"),
    (NEPTUNIAN_PULSE_LAB, "laboratory", CARDIOLOGY_DIVISION),
    (COSMIC_CARDIO_LAB, "laboratory", CARDIOLOGY_DIVISION),
];

struct Study {
    name: &'static str,
    description: &'static str,
    organization: &'static str,
    scopes: &'static [&'static str],
    data_sources: &'static [&'static str],
    clients: &'static [&'static str],
}

const BP_HR_STUDY: &str = "Lifespan Study on BP & HR";
const BP_STUDY: &str = "Lifespan Study on BP";
const BGL_STUDY: &str = "Cardiology Div Study on BGL";
const BT_STUDY: &str = "Nep Pulse Lab Study on BT";
const O2_STUDY: &str = "Cosmic Cardio Lab Study on O2";

const STUDIES: [Study; 5] = [
    Study {
        name: BP_HR_STUDY,
        description: "Blood Pressure & Heart Rate",
        organization: LIFESPAN_LAB,
        scopes: &[BP, HR, QR],
        data_sources: &["CareX", "Questionnaire"],
        clients: &[CAREX, PATIENT_ACCESS],
    },
    Study {
        name: BP_STUDY,
        description: "Blood Pressure",
        organization: LIFESPAN_LAB,
        scopes: &[BP, QR],
        data_sources: &["CareX", "Questionnaire"],
        clients: &[CAREX],
    },
    Study {
        name: BGL_STUDY,
        description: "Blood Glucose",
        organization: CARDIOLOGY_DIVISION,
        scopes: &[BG],
        data_sources: &["Dexcom"],
        clients: &[COMMONHEALTH],
    },
    Study {
        name: BT_STUDY,
        description: "Body Temperature",
        organization: NEPTUNIAN_PULSE_LAB,
        scopes: &[BT],
        data_sources: &["iHealth"],
        clients: &[COMMONHEALTH],
    },
    Study {
        name: O2_STUDY,
        description: "Oxygen Saturation",
        organization: COSMIC_CARDIO_LAB,
        scopes: &[O2],
        data_sources: &[],
        clients: &[],
    },
];

/// A seeded account. The order of `PEOPLE` is the reference's creation order, which fixes the user ids.
struct Person {
    email: &'static str,
    /// The reference draws last names from Faker; jhe uses fixed ones so that the demo is reproducible.
    last_name: &'static str,
    is_superuser: bool,
    profile: Profile,
}

enum Profile {
    Practitioner {
        roles: &'static [(&'static str, &'static str)],
        /// the web UI's sticky (organization, study), as the reference leaves it after seeding
        current: Option<(&'static str, &'static str)>,
    },
    Patient(Patient),
}

struct Patient {
    birth_date: &'static str,
    phone: &'static str,
    organizations: &'static [&'static str],
    identifiers: &'static [(&'static str, &'static str)],
    /// (study, consented scopes); a requested scope without a consent row is pending
    enrolments: &'static [(&'static str, &'static [&'static str])],
}

const fn practitioner(
    email: &'static str,
    last_name: &'static str,
    roles: &'static [(&'static str, &'static str)],
    current: Option<(&'static str, &'static str)>,
) -> Person {
    let profile = Profile::Practitioner { roles, current };
    Person { email, last_name, is_superuser: false, profile }
}

/// A patient without extra identifiers; the reference draws birth dates and phones from Faker, jhe fixes them.
const fn patient(
    email: &'static str,
    last_name: &'static str,
    (birth_date, phone): (&'static str, &'static str),
    organizations: &'static [&'static str],
    enrolments: &'static [(&'static str, &'static [&'static str])],
) -> Person {
    let profile = Profile::Patient(Patient { birth_date, phone, organizations, identifiers: &[], enrolments });
    Person { email, last_name, is_superuser: false, profile }
}

const PEOPLE: [Person; 11] = [
    Person {
        email: "admin@example.com",
        last_name: "",
        is_superuser: true,
        profile: Profile::Practitioner { roles: &[], current: None },
    },
    practitioner(
        "manager_mary@example.com",
        "Marsh",
        &[
            ("Planetary Research Institute", "manager"),
            ("Saturn School of Data Science", "manager"),
            (LIFESPAN_LAB, "manager"),
        ],
        Some((LIFESPAN_LAB, BP_HR_STUDY)),
    ),
    practitioner("member_megan@example.com", "Moreno", &[(LIFESPAN_LAB, "member")], Some((LIFESPAN_LAB, BP_HR_STUDY))),
    practitioner("viewer_victor@example.com", "Vance", &[(LIFESPAN_LAB, "viewer")], Some((LIFESPAN_LAB, BP_HR_STUDY))),
    practitioner(
        "three_org_tom@example.com",
        "Thompson",
        &[(LIFESPAN_LAB, "viewer"), (NEPTUNIAN_PULSE_LAB, "member"), (COSMIC_CARDIO_LAB, "manager")],
        Some((COSMIC_CARDIO_LAB, O2_STUDY)),
    ),
    Person {
        email: "ll_patient_peter@example.com",
        last_name: "Pearson",
        is_superuser: false,
        profile: Profile::Patient(Patient {
            birth_date: "1986-04-12",
            phone: "+1-555-010-0006",
            organizations: &[LIFESPAN_LAB],
            identifiers: &[("https://openwearables.io/ns/patient-id", "abc123"), ("urn:oid:1.2.3.4", "E1234")],
            // "Lifespan Study on BP" is left pending
            enrolments: &[(BP_HR_STUDY, &[BP, HR, QR]), (BP_STUDY, &[])],
        }),
    },
    patient(
        "ll_patient_pamela@example.com",
        "Palmer",
        ("1990-09-23", "+1-555-010-0007"),
        &[LIFESPAN_LAB],
        &[(BP_HR_STUDY, &[BP, HR, QR]), (BP_STUDY, &[BP, QR])],
    ),
    practitioner(
        "manager_mark@example.com",
        "Mendez",
        &[
            ("Neptune Health System", "manager"),
            ("Department of Medicine", "manager"),
            (CARDIOLOGY_DIVISION, "manager"),
            (NEPTUNIAN_PULSE_LAB, "manager"),
        ],
        Some((NEPTUNIAN_PULSE_LAB, BT_STUDY)),
    ),
    patient(
        "npl_patient_percy@example.com",
        "Perkins",
        ("1983-01-30", "+1-555-010-0009"),
        &[NEPTUNIAN_PULSE_LAB],
        &[(BT_STUDY, &[BT])],
    ),
    patient(
        "ccl_patient_paul@example.com",
        "Paulsen",
        ("1992-07-08", "+1-555-010-0010"),
        &[COSMIC_CARDIO_LAB],
        &[(O2_STUDY, &[O2])],
    ),
    patient(
        "ccl_cardio_patient_pat@example.com",
        "Patterson",
        ("1988-11-17", "+1-555-010-0011"),
        &[CARDIOLOGY_DIVISION, COSMIC_CARDIO_LAB],
        &[(BGL_STUDY, &[BG]), (O2_STUDY, &[O2])],
    ),
];

/// The row of `$table` matching `$found` (a `Found`), inserting `$values` into `$columns` if there is none; the
/// `$arg`s are bound to `$1`, `$2`, …. Unlike `ON CONFLICT`, this draws no id when the row exists, so the
/// reference's id ranges stay dense. The SQL is a `+` concatenation of literals, which `query_as!` checks at
/// compile time like a single literal.
#[rustfmt::skip]
macro_rules! insert_missing {
    ($table:literal, $found:literal, $columns:literal, $values:literal, $($arg:expr),+ $(,)?) => {
        sqlx::query_as!(
            Found,
            "WITH found AS (SELECT id FROM " + $table + " WHERE " + $found + " ORDER BY id LIMIT 1), "
                + "created AS (INSERT INTO " + $table + " (" + $columns + ") SELECT " + $values
                + " WHERE NOT EXISTS (SELECT 1 FROM found) RETURNING id) "
                + r#"SELECT id AS "id!", FALSE AS "inserted!" FROM found UNION ALL SELECT id, TRUE FROM created"#,
            $($arg),+
        )
    };
}

/// Inserts `($left_id, $right_id)` into the link table `$table` unless the pair is already there (a query for
/// `Seeder::link`, checked at compile time).
#[rustfmt::skip]
macro_rules! insert_link {
    ($table:literal, $left:literal, $right:literal, $left_id:expr, $right_id:expr $(,)?) => {
        sqlx::query!(
            "INSERT INTO " + $table + " (" + $left + ", " + $right + ") VALUES ($1, $2) ON CONFLICT DO NOTHING",
            $left_id,
            $right_id
        )
    };
}

/// The advisory lock that serializes seed runs ("jhe seed" in ASCII).
const SEED_LOCK: i64 = 0x6a68_6520_7365_6564;

/// Seeds the reference demo data. Idempotent: a second run inserts nothing and changes nothing.
/// `site_url` (e.g. "http://127.0.0.1:8000") is used for the OAuth clients' redirect URI
/// `<site>/auth/callback` and the `site.url` setting (only set when missing).
pub async fn seed_demo(pool: &PgPool, site_url: &str) -> Result<SeedReport> {
    let mut tx = pool.begin().await?;
    // two concurrent seeds (say `jhe dev` and `jhe seed`) would both find nothing and insert twice
    sqlx::query!("SELECT pg_advisory_xact_lock($1)", SEED_LOCK).execute(&mut *tx).await?;
    let mut seeder = Seeder {
        conn: &mut tx,
        site_url: site_url.trim_end_matches('/'),
        ids: Ids::default(),
        password: None,
        report: SeedReport::default(),
    };
    seeder.settings().await?;
    seeder.codes().await?;
    seeder.data_sources().await?;
    seeder.clients().await?;
    seeder.organizations().await?;
    seeder.studies().await?;
    for person in &PEOPLE {
        seeder.person(person).await?;
    }
    let report = seeder.report;
    tx.commit().await?;
    Ok(report)
}

/// Ids of the seeded rows by natural key, for wiring the link tables.
#[derive(Default)]
struct Ids {
    codes: HashMap<&'static str, i64>,
    data_sources: HashMap<&'static str, i64>,
    clients: HashMap<&'static str, i64>,
    organizations: HashMap<&'static str, i64>,
    studies: HashMap<&'static str, i64>,
}

/// Looks up an id stored by an earlier step of this run; a miss means a const table names something that is
/// not seeded.
fn id_of(map: &HashMap<&'static str, i64>, key: &str) -> Result<i64> {
    map.get(key).copied().ok_or_else(|| Error::Invalid(format!("the demo seed names an unknown `{key}`")))
}

/// A row that `insert_missing!` found or inserted.
struct Found {
    id: i64,
    inserted: bool,
}

/// Adds one to `counter` if the row was inserted and returns its id.
fn tally(Found { id, inserted }: Found, counter: &mut u64) -> i64 {
    *counter += u64::from(inserted);
    id
}

/// One seed run: the transaction, the ids seen so far and the tally.
struct Seeder<'c> {
    conn: &'c mut PgConnection,
    site_url: &'c str,
    ids: Ids,
    /// the argon2 hash of `SEED_PASSWORD`, computed at most once per run and only when a user is inserted
    /// (hashing is deliberately slow)
    password: Option<String>,
    report: SeedReport,
}

impl Seeder<'_> {
    /// Runs `query` (an `insert_link!`), returning the number of rows inserted.
    async fn link(&mut self, query: Query<'_, Postgres, PgArguments>) -> Result<u64> {
        let done = query.execute(&mut *self.conn).await?;
        Ok(done.rows_affected())
    }

    /// Inserts the reference's default settings whose key is missing; an operator's values are kept.
    async fn settings(&mut self) -> Result<()> {
        for (key, value) in default_settings(self.site_url) {
            let (value_type, text, int, boolean, json) = match value {
                SettingValue::Text(v) => ("string", Some(v), None, None, None),
                SettingValue::Int(v) => ("int", None, Some(v), None, None),
                SettingValue::Bool(v) => ("bool", None, None, Some(v), None),
                SettingValue::Json(v) => ("json", None, None, None, Some(v)),
            };
            let done = sqlx::query!(
                "INSERT INTO settings (key, value_type, value_string, value_int, value_bool, value_json)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key) DO NOTHING",
                key,
                value_type,
                text,
                int,
                boolean,
                json,
            )
            .execute(&mut *self.conn)
            .await?;
            self.report.settings += done.rows_affected();
        }
        Ok(())
    }

    async fn codes(&mut self) -> Result<()> {
        for (system, code, text) in CODES {
            let row = insert_missing!(
                "codeable_concepts",
                "coding_system = $1 AND coding_code = $2",
                "coding_system, coding_code, text",
                "$1, $2, $3",
                system,
                code,
                text,
            )
            .fetch_one(&mut *self.conn)
            .await?;
            self.ids.codes.insert(code, tally(row, &mut self.report.codes));
        }
        Ok(())
    }

    async fn data_sources(&mut self) -> Result<()> {
        for (name, kind, scopes) in DATA_SOURCES {
            let row = insert_missing!("data_sources", "name = $1", "name, type", "$1, $2", name, kind)
                .fetch_one(&mut *self.conn)
                .await?;
            let id = tally(row, &mut self.report.data_sources);
            self.ids.data_sources.insert(name, id);
            for scope in scopes {
                let code = id_of(&self.ids.codes, scope)?;
                let query = insert_link!("data_source_supported_scopes", "data_source_id", "scope_code_id", id, code);
                self.report.data_source_scopes += self.link(query).await?;
            }
        }
        Ok(())
    }

    async fn clients(&mut self) -> Result<()> {
        let redirect_uri = format!("{}/auth/callback", self.site_url);
        for client in &CLIENTS {
            let row = insert_missing!(
                "oauth_clients",
                "client_id = $1",
                "client_id, name, redirect_uris, client_type, grant_type, skip_authorization, algorithm",
                "$1, $2, $3, 'public', 'authorization-code', TRUE, 'RS256'",
                client.client_id,
                client.name,
                redirect_uri,
            )
            .fetch_one(&mut *self.conn)
            .await?;
            let client_pk = tally(row, &mut self.report.oauth_clients);
            self.ids.clients.insert(client.client_id, client_pk);
            if let Some(invitation_url) = client.invitation_url {
                let done = sqlx::query!(
                    "INSERT INTO patient_apps (client_pk, invitation_url, aux_data) VALUES ($1, $2, $3)
                     ON CONFLICT (client_pk) DO NOTHING",
                    client_pk,
                    invitation_url,
                    (client.aux_data)(),
                )
                .execute(&mut *self.conn)
                .await?;
                self.report.patient_apps += done.rows_affected();
            }
            for data_source in client.data_sources {
                let data_source = id_of(&self.ids.data_sources, data_source)?;
                let query = insert_link!("client_data_sources", "client_pk", "data_source_id", client_pk, data_source);
                self.report.client_data_sources += self.link(query).await?;
            }
        }
        Ok(())
    }

    async fn organizations(&mut self) -> Result<()> {
        // ROOT (id 0) comes with the migration
        self.ids.organizations.insert(ROOT, crate::ROOT_ORGANIZATION_ID);
        for (name, kind, parent) in ORGANIZATIONS {
            let parent = id_of(&self.ids.organizations, parent)?;
            let row = insert_missing!(
                "organizations",
                "name = $1 AND part_of = $3",
                "name, type, part_of",
                "$1, $2, $3",
                name,
                kind,
                parent,
            )
            .fetch_one(&mut *self.conn)
            .await?;
            let id = tally(row, &mut self.report.organizations);
            self.ids.organizations.insert(name, id);
        }
        Ok(())
    }

    async fn studies(&mut self) -> Result<()> {
        for study in &STUDIES {
            let organization = id_of(&self.ids.organizations, study.organization)?;
            let row = insert_missing!(
                "studies",
                "name = $1 AND organization_id = $3",
                "name, description, organization_id",
                "$1, $2, $3",
                study.name,
                study.description,
                organization,
            )
            .fetch_one(&mut *self.conn)
            .await?;
            let id = tally(row, &mut self.report.studies);
            self.ids.studies.insert(study.name, id);
            for scope in study.scopes {
                let code = id_of(&self.ids.codes, scope)?;
                let query = insert_link!("study_scope_requests", "study_id", "scope_code_id", id, code);
                self.report.study_scope_requests += self.link(query).await?;
            }
            for data_source in study.data_sources {
                let data_source = id_of(&self.ids.data_sources, data_source)?;
                let query = insert_link!("study_data_sources", "study_id", "data_source_id", id, data_source);
                self.report.study_data_sources += self.link(query).await?;
            }
            for client in study.clients {
                let client = id_of(&self.ids.clients, client)?;
                let query = insert_link!("study_clients", "study_id", "client_pk", id, client);
                self.report.study_clients += self.link(query).await?;
            }
        }
        Ok(())
    }

    async fn person(&mut self, person: &Person) -> Result<()> {
        let user_id = self.user(person).await?;
        match &person.profile {
            Profile::Practitioner { roles, current } => {
                let practitioner_id = self.practitioner(person, user_id, *current).await?;
                for (organization, role) in *roles {
                    let organization = id_of(&self.ids.organizations, organization)?;
                    let done = sqlx::query!(
                        "INSERT INTO practitioner_organizations (practitioner_id, organization_id, role)
                         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                        practitioner_id,
                        organization,
                        role,
                    )
                    .execute(&mut *self.conn)
                    .await?;
                    self.report.practitioner_organizations += done.rows_affected();
                }
            }
            Profile::Patient(patient) => {
                let patient_id = self.patient(person, patient, user_id).await?;
                for organization in patient.organizations {
                    let organization = id_of(&self.ids.organizations, organization)?;
                    let query = insert_link!(
                        "patient_organizations",
                        "patient_id",
                        "organization_id",
                        patient_id,
                        organization
                    );
                    self.report.patient_organizations += self.link(query).await?;
                }
                for (system, value) in patient.identifiers {
                    let done = sqlx::query!(
                        "INSERT INTO patient_identifiers (patient_id, system, value) VALUES ($1, $2, $3)
                         ON CONFLICT DO NOTHING",
                        patient_id,
                        system,
                        value,
                    )
                    .execute(&mut *self.conn)
                    .await?;
                    self.report.patient_identifiers += done.rows_affected();
                }
                for (study, consented) in patient.enrolments {
                    self.enrol(patient_id, id_of(&self.ids.studies, study)?, consented).await?;
                }
            }
        }
        Ok(())
    }

    /// The user with the person's e-mail, inserted with the seed password if missing.
    async fn user(&mut self, person: &Person) -> Result<i64> {
        let existing = sqlx::query_scalar!("SELECT id FROM users WHERE lower(email) = lower($1)", person.email)
            .fetch_optional(&mut *self.conn)
            .await?;
        if let Some(id) = existing {
            return Ok(id);
        }
        let password = match self.password.take() {
            Some(hash) => hash,
            None => hash_password(SEED_PASSWORD)?,
        };
        let user_type = match person.profile {
            Profile::Practitioner { .. } => "practitioner",
            Profile::Patient(_) => "patient",
        };
        // the reference's demo users carry `fhir-<last digit of the id, three times>` as external id
        let password = self.password.insert(password).as_str();
        let id = sqlx::query_scalar!(
            r#"INSERT INTO users (email, password, first_name, last_name, is_superuser, is_staff, user_type)
             VALUES ($1, $2, $3, $4, $5, $5, $6)
             RETURNING id AS "id!""#,
            person.email,
            password,
            first_name(person),
            person.last_name,
            person.is_superuser,
            user_type,
        )
        .fetch_one(&mut *self.conn)
        .await?;
        if !person.is_superuser {
            sqlx::query!("UPDATE users SET identifier = 'fhir-' || repeat(right(id::text, 1), 3) WHERE id = $1", id)
                .execute(&mut *self.conn)
                .await?;
        }
        self.report.users += 1;
        Ok(id)
    }

    /// The practitioner profile of `user_id`; a new one starts with the web UI's sticky organization and study.
    async fn practitioner(&mut self, person: &Person, user_id: i64, current: Option<(&str, &str)>) -> Result<i64> {
        let settings = match current {
            Some((organization, study)) => json!({
                "current_organization_id": id_of(&self.ids.organizations, organization)?,
                "current_study_id": id_of(&self.ids.studies, study)?,
            }),
            None => json!({}),
        };
        let row = insert_missing!(
            "practitioners",
            "user_id = $1",
            "user_id, identifier, name_family, name_given, settings",
            "$1, '', $2, $3, $4",
            user_id,
            person.last_name,
            first_name(person),
            settings,
        )
        .fetch_one(&mut *self.conn)
        .await?;
        Ok(tally(row, &mut self.report.practitioners))
    }

    async fn patient(&mut self, person: &Person, patient: &Patient, user_id: i64) -> Result<i64> {
        let row = insert_missing!(
            "patients",
            "user_id = $1",
            "user_id, name_family, name_given, birth_date, telecom_phone",
            "$1, $2, $3, $4::text::date, $5",
            user_id,
            person.last_name,
            first_name(person),
            patient.birth_date,
            patient.phone,
        )
        .fetch_one(&mut *self.conn)
        .await?;
        Ok(tally(row, &mut self.report.patients))
    }

    /// Enrols the patient in the study and records a consent for each of `consented`; the study's other
    /// requested scopes stay pending (no consent row).
    async fn enrol(&mut self, patient_id: i64, study_id: i64, consented: &[&str]) -> Result<()> {
        let query = insert_link!("study_patients", "study_id", "patient_id", study_id, patient_id);
        self.report.study_patients += self.link(query).await?;
        let study_patient_id = sqlx::query_scalar!(
            "SELECT id FROM study_patients WHERE study_id = $1 AND patient_id = $2",
            study_id,
            patient_id
        )
        .fetch_one(&mut *self.conn)
        .await?;
        for scope in consented {
            let code = id_of(&self.ids.codes, scope)?;
            let done = sqlx::query!(
                "INSERT INTO study_patient_scope_consents (study_patient_id, scope_code_id, consented)
                 VALUES ($1, $2, TRUE) ON CONFLICT DO NOTHING",
                study_patient_id,
                code,
            )
            .execute(&mut *self.conn)
            .await?;
            self.report.consents += done.rows_affected();
        }
        Ok(())
    }
}

enum SettingValue<'a> {
    Text(&'a str),
    Int(i64),
    Bool(bool),
    Json(Value),
}

/// The reference's default settings (its `seed.py`); `site.url` is where this jhe is served.
fn default_settings(site_url: &str) -> Vec<(&'static str, SettingValue<'_>)> {
    use SettingValue::{Bool, Int, Json, Text};
    vec![
        ("site.url", Text(site_url)),
        ("site.ui.title", Text("JupyterHealth Exchange")),
        ("site.time_zone", Text("America/Los_Angeles")),
        ("site.registration_invite_code", Text("jhe")),
        ("auth.default_orgs", Text("")),
        ("auth.sso.saml2", Int(0)),
        ("auth.sso.valid_domains", Text("")),
        ("auth.patient.invitation_expiration_days", Int(7)),
        ("auth.patient.invitation_redemption_window_hours", Int(12)),
        ("auth.patient_access_clients", Json(json!([]))),
        ("auth.sof.trusted_issuers", Json(json!(["https://fhir.epic.com/interconnect-fhir-oauth/oauth2"]))),
        ("auth.sof.trusted_audience", Text(EPIC_SANDBOX_CLIENT_ID)),
        // the clients registered for the token exchange: the reference's "SoF EHR Launch" application
        ("auth.token_exchange_clients", Json(json!(["sof-ehr-launch"]))),
        ("module.ow", Bool(false)),
        ("ow.sync_in_progress", Text("")),
        ("ow.api_url", Text("http://localhost:8001")),
        ("ow.api_key", Text("")),
    ]
}

/// The reference's first name: the e-mail's local part in title case without separators
/// (`ll_patient_peter` → `LlPatientPeter`). The superuser has none.
fn first_name(person: &Person) -> String {
    if person.is_superuser {
        return String::new();
    }
    let local = person.email.split('@').next().unwrap_or_default();
    local.split('_').map(title_case).collect()
}

fn title_case(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars.flat_map(char::to_lowercase)).collect(),
        None => String::new(),
    }
}
