//! Consent on read (decisions.md, "Consent is enforced on every read"): what one caller may see, as a value the
//! observation table cannot be built without, turned into a predicate inside every scan.
//!
//! * A patient sees their own observations, every code (and the patient, study and organization filters of a
//!   search are ignored for them, as in the reference, jhe-compat §4.3).
//! * A practitioner sees (patient P, code C) only if P is in one of the practitioner's organizations and P
//!   currently consents to C for at least one study owned by one of those organizations. A study-scoped read
//!   (study S) also needs P enrolled in S, C requested by S and P's consent to C *for S*. Explicit patient, study
//!   and organization filters must lie within the practitioner's organizations (403 otherwise).
//! * A superuser is a practitioner of every organization: the organization conditions drop, consent stays.
//! * Anyone else (a user with neither profile) sees nothing.
//! * Whoever calls, a token whose SMART scopes grant reading only some codes (`user/Observation.rs?code=…`, the
//!   caller's `observation_codes`) sees only those: every other code leaves the scope here, so search, read by id,
//!   counts, `$lastn`, `$stats` and exports are all limited by this one rule.
//!
//! Consent is read from Postgres on every search, so a revoked consent hides the data from the next read.

use std::collections::{BTreeMap, BTreeSet};

use datafusion::logical_expr::{Expr, col, lit};
use jhe_catalog::{Caller, CodeLimit, ConsentQuery, ParquetFileRow};
use jhe_schemas::table::{COL_CODING_CODE, COL_CODING_SYSTEM, COL_PATIENT_ID};
use sqlx::PgPool;

use crate::error::{QueryError, Result};
use crate::search::{CodeMatch, ObservationFilters, in_list_i64};

/// What one caller may read. Built only by [`AccessScope::resolve`], from the caller's rights.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessScope {
    grant: Grant,
}

#[derive(Debug, Clone, PartialEq)]
enum Grant {
    /// A patient: their own observations, every code `codes` allows.
    OwnData { patient_id: i64, codes: CodeLimit },
    /// (coding system, coding code) → the patients (sorted, unique) whose observations of that code may be read.
    Consented(BTreeMap<(String, String), Vec<i64>>),
}

impl AccessScope {
    /// The scope of `caller` for a search with `filters`. For practitioners the explicit patient, study and
    /// organization filters are checked first (403 when outside the caller's organizations) and narrow the
    /// consent lookup, so the predicate stays small for the common searches.
    pub async fn resolve(pool: &PgPool, caller: &Caller, filters: &ObservationFilters) -> Result<Self> {
        if caller.is_practitioner() {
            let organizations = (!caller.is_superuser).then(|| caller.organization_ids());
            // The filters' check and the consent lookup are independent statements: both at once, on two
            // connections. A refused filter answers 403 whatever the lookup found.
            let authorized = async {
                match &organizations {
                    Some(organizations) => authorize_filters(pool, organizations, filters).await,
                    None => Ok(()),
                }
            };
            let patients: Option<Vec<i64>> = filters.patients.as_ref().map(|ids| ids.iter().copied().collect());
            if patients.as_ref().is_some_and(Vec::is_empty) {
                authorized.await?;
                return Ok(Self::nothing());
            }
            let codes: Option<Vec<(String, String)>> = filters.code_pairs().map(|pairs| pairs.into_iter().collect());
            let query = ConsentQuery {
                organizations: organizations.as_deref(),
                patients: patients.as_deref(),
                study_id: filters.study_id,
                organization_id: filters.organization_id,
                codes: codes.as_deref(),
            };
            let (authorized, pairs) = tokio::join!(authorized, jhe_catalog::consented_pairs(pool, &query));
            authorized?;
            let mut consented: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
            for pair in pairs? {
                if caller.observation_codes.allows(&pair.coding_system, &pair.coding_code) {
                    consented.entry((pair.coding_system, pair.coding_code)).or_default().push(pair.patient_id);
                }
            }
            for patients in consented.values_mut() {
                patients.sort_unstable();
                patients.dedup();
            }
            return Ok(Self { grant: Grant::Consented(consented) });
        }
        match caller.patient_id {
            Some(patient_id) => {
                Ok(Self { grant: Grant::OwnData { patient_id, codes: caller.observation_codes.clone() } })
            }
            None => Ok(Self::nothing()),
        }
    }

    fn nothing() -> Self {
        Self { grant: Grant::Consented(BTreeMap::new()) }
    }

    /// Whether this is a patient reading their own data (whose patient, study and organization filters are
    /// ignored).
    pub fn is_own_data(&self) -> bool {
        matches!(self.grant, Grant::OwnData { .. })
    }

    /// Whether the scope allows no row at all.
    pub fn is_empty(&self) -> bool {
        matches!(&self.grant, Grant::Consented(pairs) if pairs.is_empty())
    }

    /// The predicate every scan applies: `patient_id = P` for a patient (and the codes their token may read); for
    /// a practitioner an OR over groups of codes that share one patient list,
    /// `patient_id IN (…) AND coding_system = S AND coding_code IN (…)`.
    pub(crate) fn predicate(&self) -> Expr {
        match &self.grant {
            Grant::OwnData { patient_id, codes } => {
                let own = col(COL_PATIENT_ID).eq(lit(*patient_id));
                code_limit_exprs(codes).into_iter().fold(own, Expr::and)
            }
            Grant::Consented(pairs) => {
                // the common case — every patient consents to the same codes — becomes a single group
                let mut groups: BTreeMap<&[i64], BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
                for ((system, code), patients) in pairs {
                    groups.entry(patients.as_slice()).or_default().entry(system.as_str()).or_default().push(code);
                }
                groups
                    .into_iter()
                    .map(|(patients, systems)| {
                        let codes = systems
                            .into_iter()
                            .map(|(system, codes)| col(COL_CODING_SYSTEM).eq(lit(system)).and(in_list_str(codes)))
                            .reduce(Expr::or)
                            .unwrap_or(lit(false));
                        in_list_i64(COL_PATIENT_ID, patients).and(codes)
                    })
                    .reduce(Expr::or)
                    .unwrap_or(lit(false))
            }
        }
    }

    /// The (system, code) pairs that may hold visible rows; `None` for a patient (every code their token may read).
    pub(crate) fn pairs(&self) -> Option<Vec<(String, String)>> {
        match &self.grant {
            Grant::OwnData { .. } => None,
            Grant::Consented(pairs) => Some(pairs.keys().cloned().collect()),
        }
    }

    /// Whether rows of (`system`, `code`) of `patient` are visible.
    pub(crate) fn allows(&self, system: &str, code: &str, patient: i64) -> bool {
        match &self.grant {
            Grant::OwnData { patient_id, codes } => *patient_id == patient && codes.allows(system, code),
            Grant::Consented(pairs) => pairs
                .get(&(system.to_owned(), code.to_owned()))
                .is_some_and(|patients| patients.binary_search(&patient).is_ok()),
        }
    }

    /// Every patient whose rows may be visible, sorted.
    pub(crate) fn patients(&self) -> Vec<i64> {
        match &self.grant {
            Grant::OwnData { patient_id, .. } => vec![*patient_id],
            Grant::Consented(pairs) => {
                let patients: BTreeSet<i64> = pairs.values().flatten().copied().collect();
                patients.into_iter().collect()
            }
        }
    }

    /// The one patient whose rows a scope allows, if it allows only one (for the catalog's patient filter).
    pub(crate) fn single_patient(&self) -> Option<i64> {
        match &self.grant {
            Grant::OwnData { patient_id, .. } => Some(*patient_id),
            Grant::Consented(pairs) => {
                let mut patients = pairs.values().flatten();
                let first = *patients.next()?;
                patients.all(|patient| *patient == first).then_some(first)
            }
        }
    }

    /// Whether `file` may hold a visible row of one of `patients` (`None`: any patient): its code is allowed for a
    /// patient within the file's patient id range.
    pub(crate) fn may_see(&self, file: &ParquetFileRow, patients: Option<&BTreeSet<i64>>) -> bool {
        let wanted = |patient: i64| patients.is_none_or(|wanted| wanted.contains(&patient));
        let in_file = |patient: i64| file.min_patient_id <= patient && patient <= file.max_patient_id;
        match &self.grant {
            Grant::OwnData { patient_id, codes } => {
                in_file(*patient_id) && wanted(*patient_id) && codes.allows(&file.coding_system, &file.coding_code)
            }
            Grant::Consented(pairs) => {
                let Some(allowed) = pairs.get(&(file.coding_system.clone(), file.coding_code.clone())) else {
                    return false;
                };
                let start = allowed.partition_point(|patient| *patient < file.min_patient_id);
                let end = allowed.partition_point(|patient| *patient <= file.max_patient_id);
                match patients {
                    None => start < end,
                    Some(wanted) => wanted
                        .range(file.min_patient_id..=file.max_patient_id)
                        .any(|p| allowed.binary_search(p).is_ok()),
                }
            }
        }
    }
}

/// One predicate per entry of `limit` (the OR of its alternatives); none without a limit.
fn code_limit_exprs(limit: &CodeLimit) -> Vec<Expr> {
    limit
        .all_of()
        .iter()
        .map(|alternatives| {
            alternatives
                .iter()
                .map(|allowed| CodeMatch { system: allowed.system.clone(), code: allowed.code.clone() }.expr())
                .reduce(Expr::or)
                .unwrap_or(lit(false))
        })
        .collect()
}

fn in_list_str(mut codes: Vec<&str>) -> Expr {
    match codes.len() {
        0 => lit(false),
        1 => col(COL_CODING_CODE).eq(lit(codes.remove(0))),
        _ => col(COL_CODING_CODE).in_list(codes.into_iter().map(lit).collect(), false),
    }
}

/// Whether `patient` is in one of `organizations`, by the (patient, organization) rows of
/// `jhe_catalog::organizations_of_patients`.
pub(crate) fn shares_organization(memberships: &[(i64, Option<i64>)], patient: i64, organizations: &[i64]) -> bool {
    memberships.iter().any(|(member, organization)| {
        *member == patient && organization.is_some_and(|organization| organizations.contains(&organization))
    })
}

/// jhe-compat §4.3: explicit patient, study and organization filters must lie within the caller's organizations
/// (a missing row is answered like an inaccessible one, so ids cannot be probed).
async fn authorize_filters(pool: &PgPool, organizations: &[i64], filters: &ObservationFilters) -> Result<()> {
    if let Some(organization_id) = filters.organization_id
        && !organizations.contains(&organization_id)
    {
        return Err(QueryError::Forbidden(format!(
            "You do not have access to Organization/{organization_id}: you are not a member of it."
        )));
    }
    if let Some(study_id) = filters.study_id {
        let owner = jhe_catalog::study_organization_id(pool, study_id).await?;
        if !owner.is_some_and(|owner| organizations.contains(&owner)) {
            return Err(QueryError::Forbidden(format!(
                "You do not have access to Group/{study_id}: it is not a study of your organizations."
            )));
        }
    }
    if let Some(patients) = &filters.patients
        && !patients.is_empty()
    {
        let ids: Vec<i64> = patients.iter().copied().collect();
        let memberships = jhe_catalog::organizations_of_patients(pool, &ids).await?;
        for patient in patients {
            if !shares_organization(&memberships, *patient, organizations) {
                return Err(QueryError::Forbidden(format!(
                    "You do not have access to Patient/{patient}: the patient is not in your organizations."
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, Utc};
    use jhe_catalog::FileState;
    use uuid::Uuid;

    fn file(code: &str, patients: (i64, i64)) -> ParquetFileRow {
        let now = Utc::now();
        ParquetFileRow {
            id: Uuid::nil(),
            object_path: String::new(),
            state: FileState::Published,
            coding_system: "s".into(),
            coding_code: code.into(),
            day: NaiveDate::default(),
            row_count: 1,
            size_bytes: 1,
            min_patient_id: patients.0,
            max_patient_id: patients.1,
            min_effective_start: now,
            max_effective_start: now,
            max_effective_end: None,
            min_last_updated: now,
            max_last_updated: now,
            compaction_level: 0,
            created_at: now,
            published_at: Some(now),
            marked_at: None,
        }
    }

    fn consented(pairs: &[(&str, &[i64])]) -> AccessScope {
        AccessScope {
            grant: Grant::Consented(
                pairs
                    .iter()
                    .map(|(code, patients)| (("s".to_owned(), (*code).to_owned()), patients.to_vec()))
                    .collect(),
            ),
        }
    }

    #[test]
    fn files_are_kept_only_for_allowed_patients_of_their_code() {
        let scope = consented(&[("a", &[3, 10]), ("b", &[5])]);
        assert!(scope.may_see(&file("a", (1, 4)), None));
        assert!(!scope.may_see(&file("a", (4, 9)), None));
        assert!(scope.may_see(&file("a", (10, 10)), None));
        assert!(!scope.may_see(&file("c", (1, 100)), None));
        assert!(scope.may_see(&file("b", (1, 100)), Some(&BTreeSet::from([5, 7]))));
        assert!(!scope.may_see(&file("b", (1, 100)), Some(&BTreeSet::from([3]))));
        assert!(!consented(&[]).may_see(&file("a", (1, 100)), None));

        let own = AccessScope { grant: Grant::OwnData { patient_id: 7, codes: CodeLimit::default() } };
        assert!(own.may_see(&file("anything", (1, 9)), None));
        assert!(!own.may_see(&file("anything", (8, 9)), None));
        assert!(!own.may_see(&file("anything", (1, 9)), Some(&BTreeSet::from([6]))));
    }

    #[test]
    fn codes_sharing_a_patient_list_become_one_group() {
        let scope = consented(&[("a", &[1, 2]), ("b", &[1, 2]), ("c", &[3])]);
        let text = scope.predicate().to_string();
        assert_eq!(text.matches("patient_id").count(), 2, "{text}");
        assert_eq!(consented(&[]).predicate(), lit(false));
        assert_eq!(scope.single_patient(), None);
        assert_eq!(consented(&[("a", &[4]), ("b", &[4])]).single_patient(), Some(4));
    }

    #[test]
    fn a_patients_code_limit_narrows_rows_files_and_predicate() {
        let mut codes = CodeLimit::default();
        codes.and(vec![jhe_catalog::AllowedCode { system: Some("s".into()), code: Some("a".into()) }]);
        let own = AccessScope { grant: Grant::OwnData { patient_id: 7, codes } };
        assert!(own.allows("s", "a", 7));
        assert!(!own.allows("s", "b", 7) && !own.allows("other", "a", 7) && !own.allows("s", "a", 8));
        assert!(own.may_see(&file("a", (1, 9)), None));
        assert!(!own.may_see(&file("b", (1, 9)), None));
        let text = own.predicate().to_string();
        assert!(text.contains("patient_id") && text.contains("coding_code"), "{text}");

        let mut nothing = CodeLimit::default();
        nothing.and(Vec::new());
        let own = AccessScope { grant: Grant::OwnData { patient_id: 7, codes: nothing } };
        assert!(!own.allows("s", "a", 7) && !own.may_see(&file("a", (1, 9)), None));
    }
}
