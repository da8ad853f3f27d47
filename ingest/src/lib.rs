//! Observation uploads: the checks of `jhe-compat.md` §6.7 in the reference's order, observation ids, identifier
//! dedupe, and the durable hand-off to the observation log. HTTP (routes, status lines, OperationOutcomes) is the
//! `api` crate's job; this crate answers in statuses and messages.
//!
//! An upload is acknowledged only once the log has made it durable (Kafka: acks=all; embedded: fsynced). From there
//! the processor owns it: it validates again (records may also come straight from gateways), applies consent as
//! it stands at processing time, and publishes Parquet files.

mod bulk;
mod checks;
mod ids;
mod ndjson;

pub use bulk::{
    BulkReport, BulkUpload, LineError, LineIds, MAX_DIAGNOSTICS_CHARS, MAX_HELD_BYTES, MAX_NDJSON_BYTES,
    MAX_NDJSON_LINES, MAX_REPORTED_LINE_ERRORS,
};
pub use checks::Rejection;
pub use ids::IdAllocator;

use checks::{Checked, Prepared, SchemaIds};
use jhe_catalog::{Caller, ControlPlaneCache, IdentifierClaim};
use jhe_eventlog::message::{
    FORMAT_OBSERVATION_V1, HEADER_FORMAT, MessageCode, MessageHead, MessageIdentifier, encode_observation, patient_key,
};
use jhe_eventlog::{Producer, Record};
use jhe_schemas::ObservationRecord;
use jhe_schemas::fhir::FhirError;
use jhe_schemas::omh::Validators;
use sqlx::PgPool;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Instant;

/// Why a whole request was refused (entry-level problems are [`Rejection`]s).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The body is not an acceptable Observation / Bundle (400; the message starts with the FHIR path).
    #[error(transparent)]
    Invalid(#[from] FhirError),
    /// The batch pre-check of §6.8 (400 with the DRF list body `["resource.valueAttachment.data must be not null."]`).
    #[error("{0}")]
    BundlePrecheck(String),
    /// The log or the database is unavailable; nothing was acknowledged (503).
    #[error("{0}")]
    Unavailable(String),
}

/// An observation that is now durable in the log.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub record: ObservationRecord,
    /// The code's text (`display`), for rendering.
    pub code_text: Option<String>,
}

/// The outcome of one entry of a batch or one NDJSON line.
pub type EntryOutcome = Result<Accepted, Rejection>;

/// Where accepted observations go.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// The observation topic.
    pub topic: String,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self { topic: "jhe.observations".to_owned() }
    }
}

/// The upload service; cheap to clone.
#[derive(Debug, Clone)]
pub struct Ingestor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    cache: ControlPlaneCache,
    validators: Validators,
    ids: IdAllocator,
    producer: Producer,
    settings: IngestSettings,
    /// The most body bytes one NDJSON upload has held at once.
    bulk_peak_held: AtomicUsize,
}

impl Ingestor {
    pub fn new(
        pool: PgPool,
        cache: ControlPlaneCache,
        validators: Validators,
        producer: Producer,
        settings: IngestSettings,
    ) -> Self {
        let ids = IdAllocator::new(pool.clone());
        let bulk_peak_held = AtomicUsize::new(0);
        Self { inner: Arc::new(Inner { pool, cache, validators, ids, producer, settings, bulk_peak_held }) }
    }

    /// The control-plane cache the checks read (tests wait on it after changing consent).
    pub fn cache(&self) -> &ControlPlaneCache {
        &self.inner.cache
    }

    /// `POST /FHIR/R5/Observation`: one observation; a refused one is the request's status.
    pub async fn create<B>(&self, caller: &Caller, body: B) -> Result<EntryOutcome, IngestError>
    where
        B: AsRef<[u8]> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let caller = caller.clone();
        let checked = run_blocking(move || {
            let upload = jhe_schemas::fhir::parse_observation(body.as_ref());
            // A body that is not an Observation at all is the request's error, as in the reference (step 1).
            let upload = upload?;
            let snapshot = inner.cache.snapshot();
            let schema_ids = &mut SchemaIds::default();
            Ok::<_, IngestError>(vec![checks::check(&snapshot, &inner.validators, schema_ids, &caller, Ok(upload))])
        })
        .await??;
        let mut outcomes = self.commit(checked).await?;
        Ok(outcomes.pop().unwrap_or_else(|| Err(Rejection::internal())))
    }

    /// `POST /FHIR/R5/` with a batch or transaction Bundle: every entry on its own (no transaction), outcomes in
    /// entry order.
    pub async fn batch<B>(&self, caller: &Caller, body: B) -> Result<Vec<EntryOutcome>, IngestError>
    where
        B: AsRef<[u8]> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let caller = caller.clone();
        let checked = run_blocking(move || {
            let bundle = jhe_schemas::fhir::parse_bundle(body.as_ref()).map_err(|error| match error {
                FhirError::BundleEntryWithoutData { .. } => {
                    IngestError::BundlePrecheck("resource.valueAttachment.data must be not null.".to_owned())
                }
                other => IngestError::Invalid(other),
            })?;
            let snapshot = inner.cache.snapshot();
            let schema_ids = &mut SchemaIds::default();
            Ok::<_, IngestError>(
                bundle
                    .entries
                    .into_iter()
                    .map(|entry| checks::check(&snapshot, &inner.validators, schema_ids, &caller, entry))
                    .collect::<Vec<_>>(),
            )
        })
        .await??;
        self.commit(checked).await
    }

    /// Steps 5 (identifiers) and 10 (store) for checked entries: claims identifiers, assigns ids, appends the
    /// accepted observations to the log and waits for it to make them durable.
    async fn commit(&self, checked: Vec<Checked>) -> Result<Vec<EntryOutcome>, IngestError> {
        let started = Instant::now();
        let inner = &self.inner;
        let mut outcomes: Vec<Option<EntryOutcome>> = Vec::with_capacity(checked.len());
        let mut prepared: Vec<(usize, Prepared)> = Vec::new();
        // Entries that failed a check after step 5 still answer 409 when an identifier is taken (step 5 first).
        let mut failed_late: Vec<FailedLate> = Vec::new();
        for (index, entry) in checked.into_iter().enumerate() {
            match entry {
                Checked::Rejected(rejection) => outcomes.push(Some(Err(rejection))),
                Checked::FailedAfterIdentifiers { identifiers, rejection } if !identifiers.is_empty() => {
                    failed_late.push((index, identifiers, rejection));
                    outcomes.push(None);
                }
                Checked::FailedAfterIdentifiers { rejection, .. } => outcomes.push(Some(Err(rejection))),
                Checked::Ready(entry) => {
                    prepared.push((index, *entry));
                    outcomes.push(None);
                }
            }
        }

        if !failed_late.is_empty() {
            let pairs: Vec<(String, String)> = failed_late.iter().flat_map(|(_, ids, _)| ids.iter().cloned()).collect();
            let owners = jhe_catalog::identifier_owners(&inner.pool, &pairs).await.map_err(unavailable)?;
            for (index, identifiers, rejection) in failed_late {
                let taken = identifiers.iter().find(|pair| owners.contains_key(*pair));
                outcomes[index] = Some(Err(match taken {
                    Some((system, value)) => Rejection::duplicate_identifier(system, value),
                    None => rejection,
                }));
            }
        }

        if !prepared.is_empty() {
            let first_id = inner.ids.allocate(prepared.len()).await.map_err(unavailable)?;
            // The log records are encoded now, while the records still hold their identifiers; the identifiers
            // then move into the claims (one statement for the whole request) and back once it answered.
            let mut claims = Vec::new();
            let mut messages = Vec::with_capacity(prepared.len());
            let mut claim_counts = Vec::with_capacity(prepared.len());
            for (offset, (_, entry)) in prepared.iter_mut().enumerate() {
                entry.record.id = first_id + offset as i64;
                messages.push(Some(message_record(&entry.record)));
                claim_counts.push(entry.record.identifiers.len());
                let observation_id = entry.record.id;
                claims.extend(std::mem::take(&mut entry.record.identifiers).into_iter().map(|identifier| {
                    IdentifierClaim { system: identifier.system, value: identifier.value, observation_id }
                }));
            }
            let claiming = Instant::now();
            let owned = jhe_catalog::reserve_identifiers(&inner.pool, &claims).await.map_err(unavailable)?;
            metrics::histogram!("jhe_ingest_claims_seconds").record(claiming.elapsed().as_secs_f64());
            // An observation is accepted only when it owns every identifier it carries; claims it did win are
            // released again when it does not.
            let mut release = Vec::new();
            let mut records = Vec::with_capacity(prepared.len());
            // claim ranges of the observations that go to the log
            let mut accepted_claims = Vec::with_capacity(prepared.len());
            let mut accepted = vec![false; prepared.len()];
            let mut start = 0;
            for (position, ((index, _), count)) in prepared.iter().zip(&claim_counts).enumerate() {
                let range = start..start + count;
                start += count;
                let (own, entry_claims) = (&owned[range.clone()], &claims[range.clone()]);
                if let Some(lost) = own.iter().position(|owned| !owned) {
                    let lost = &entry_claims[lost];
                    outcomes[*index] = Some(Err(Rejection::duplicate_identifier(&lost.system, &lost.value)));
                    release.extend(entry_claims.iter().zip(own).filter(|(_, owned)| **owned).map(|(c, _)| c.clone()));
                    continue;
                }
                records.extend(messages[position].take());
                accepted_claims.push(range);
                accepted[position] = true;
            }
            if !release.is_empty()
                && let Err(error) = jhe_catalog::release_identifiers(&inner.pool, &release).await
            {
                tracing::warn!(%error, count = release.len(), "could not release identifier claims");
            }
            if !records.is_empty() {
                let writing = Instant::now();
                let written = inner.producer.send(&inner.settings.topic, records).await;
                metrics::histogram!("jhe_ingest_log_write_seconds").record(writing.elapsed().as_secs_f64());
                if let Err(error) = written {
                    tracing::error!(%error, "observation log write failed; nothing acknowledged");
                    let unsent: Vec<IdentifierClaim> =
                        accepted_claims.into_iter().flat_map(|range| claims[range].iter().cloned()).collect();
                    if let Err(error) = jhe_catalog::release_identifiers(&inner.pool, &unsent).await {
                        tracing::warn!(%error, "could not release identifier claims after a failed log write");
                    }
                    return Err(IngestError::Unavailable(
                        "the observation log is unavailable; nothing was stored, try again shortly".to_owned(),
                    ));
                }
            }
            // the identifiers go back to their records, for the answer
            let mut claims = claims.into_iter();
            for (((index, mut entry), count), accepted) in prepared.into_iter().zip(claim_counts).zip(accepted) {
                let identifiers = claims.by_ref().take(count);
                if accepted {
                    entry.record.identifiers = identifiers
                        .map(|claim| jhe_schemas::Identifier { system: claim.system, value: claim.value })
                        .collect();
                    outcomes[index] = Some(Ok(Accepted { record: entry.record, code_text: entry.code_text }));
                } else {
                    identifiers.for_each(drop);
                }
            }
        }

        let outcomes: Vec<EntryOutcome> =
            outcomes.into_iter().map(|outcome| outcome.unwrap_or_else(|| Err(Rejection::internal()))).collect();
        let accepted = outcomes.iter().filter(|o| o.is_ok()).count() as u64;
        metrics::counter!("jhe_ingest_observations_total", "outcome" => "accepted").increment(accepted);
        metrics::counter!("jhe_ingest_observations_total", "outcome" => "rejected")
            .increment(outcomes.len() as u64 - accepted);
        metrics::histogram!("jhe_ingest_commit_seconds").record(started.elapsed().as_secs_f64());
        Ok(outcomes)
    }
}

/// An entry refused after step 5, with the identifiers that decide whether it is a 409 instead.
type FailedLate = (usize, Vec<(String, String)>, Rejection);

/// The log record of an accepted observation.
fn message_record(record: &ObservationRecord) -> Record {
    let head = MessageHead {
        id: Some(record.id),
        patient: record.patient_id,
        device: record.data_source_id,
        code: MessageCode { system: record.coding_system.as_str().into(), code: record.coding_code.as_str().into() },
        identifiers: record
            .identifiers
            .iter()
            .map(|i| MessageIdentifier { system: i.system.as_str().into(), value: i.value.as_str().into() })
            .collect(),
        received_at_micros: Some(record.last_updated_micros),
    };
    Record {
        key: patient_key(record.patient_id),
        value: encode_observation(&head, &record.omh_json),
        headers: vec![(HEADER_FORMAT.to_owned(), FORMAT_OBSERVATION_V1.as_bytes().to_vec())],
    }
}

fn unavailable(error: jhe_catalog::Error) -> IngestError {
    tracing::error!(%error, "control plane unavailable during an upload");
    IngestError::Unavailable("the database is unavailable; nothing was stored, try again shortly".to_owned())
}

/// Runs CPU-heavy parsing and checks off the async workers. `jhe_ingest_check_seconds` is the time a request
/// spends there, waiting for a blocking thread included (beside `jhe_ingest_claims_seconds` and
/// `jhe_ingest_log_write_seconds`, the parts of `jhe_ingest_commit_seconds`, it shows where an upload's time goes).
async fn run_blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, IngestError> {
    let started = Instant::now();
    let done = tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| IngestError::Unavailable(format!("upload worker failed: {error}")));
    metrics::histogram!("jhe_ingest_check_seconds").record(started.elapsed().as_secs_f64());
    done
}
