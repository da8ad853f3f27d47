-- jhe data plane catalog: observation ids, identifier dedupe, the Parquet file catalog, the log positions the files
-- cover, and change notifications that keep the ingest/processor caches of the control plane fresh.

-- Observation ids are handed out in blocks: every ingest replica takes one `nextval` (a block base) and assigns the
-- next 65,536 ids locally, so ids are unique across replicas without a round trip per observation. Ids the
-- processor derives for records produced straight to the topic by gateways live above 2^62 (see jhe-eventlog).
CREATE SEQUENCE observation_id_blocks START WITH 1 INCREMENT BY 1;

-- (system, value) of every stored observation identifier, globally unique as in the reference (duplicate = 409).
-- Ingest reserves the pair for the observation id it assigns before producing to the log; the processor keeps a
-- record only if its id owns every identifier it carries, so a duplicate is never stored twice.
CREATE TABLE observation_identifiers (
    system         TEXT NOT NULL,
    value          TEXT NOT NULL,
    observation_id BIGINT NOT NULL,
    reserved_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (system, value)
);
CREATE INDEX observation_identifiers_observation_idx ON observation_identifiers (observation_id);

-- The next offset to read, per (topic, partition): the true consumer position (Kafka's committed offsets are only
-- a hint for lag dashboards). Moved only in the transaction that publishes the files covering the offsets.
CREATE TABLE log_positions (
    topic       TEXT NOT NULL,
    partition   INTEGER NOT NULL CHECK (partition >= 0),
    next_offset BIGINT NOT NULL CHECK (next_offset >= 0),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);

-- Every Parquet file of the observation table. Life cycle: staged (row written before the upload; an object that
-- never gets published is an orphan the janitor deletes) -> published (visible to queries; flipped in the same
-- transaction that moves log_positions) -> marked_for_deletion (replaced by compaction; deleted once no query can
-- still be reading it).
CREATE TABLE parquet_files (
    id                   UUID PRIMARY KEY,
    object_path          TEXT NOT NULL UNIQUE,
    state                TEXT NOT NULL DEFAULT 'staged'
                             CHECK (state IN ('staged', 'published', 'marked_for_deletion')),
    coding_system        TEXT NOT NULL,
    coding_code          TEXT NOT NULL,
    -- the UTC day of effective_start of every row (the hive `date=` partition)
    day                  DATE NOT NULL,
    row_count            BIGINT NOT NULL CHECK (row_count >= 0),
    size_bytes           BIGINT NOT NULL CHECK (size_bytes >= 0),
    min_patient_id       BIGINT NOT NULL,
    max_patient_id       BIGINT NOT NULL,
    min_effective_start  TIMESTAMPTZ NOT NULL,
    max_effective_start  TIMESTAMPTZ NOT NULL,
    max_effective_end    TIMESTAMPTZ,
    min_last_updated     TIMESTAMPTZ NOT NULL,
    max_last_updated     TIMESTAMPTZ NOT NULL,
    -- 0 for files written by the processor; n + 1 for a file compacted from files of level <= n
    compaction_level     INTEGER NOT NULL DEFAULT 0,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at         TIMESTAMPTZ,
    marked_at            TIMESTAMPTZ
);
-- the query layer prunes by code and day first
CREATE INDEX parquet_files_published_idx ON parquet_files (coding_system, coding_code, day) WHERE state = 'published';
CREATE INDEX parquet_files_state_idx ON parquet_files (state, created_at) WHERE state <> 'published';

-- Control-plane change notifications: ingest and the processor cache patients, data sources, codes and consents and
-- reload within a second of any change (LISTEN jhe_control_plane; a poll of this counter is the fallback).
CREATE TABLE control_plane_version (
    singleton  BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    version    BIGINT NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO control_plane_version (version) VALUES (1);

CREATE FUNCTION bump_control_plane_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE control_plane_version SET version = version + 1, changed_at = now();
    PERFORM pg_notify('jhe_control_plane', '');
    RETURN NULL;
END
$$;

DO $$
DECLARE t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'patients', 'patient_organizations', 'codeable_concepts', 'study_patients',
                             'study_patient_scope_consents', 'data_sources', 'studies']
    LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION bump_control_plane_version()', t || '_control_plane_changed', t);
    END LOOP;
END
$$;
