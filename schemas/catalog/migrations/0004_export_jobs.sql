-- FHIR Bulk Data exports (`Group/{study}/$export`): one row per kick-off. The row is the job's whole state, so
-- the status and file routes answer from any process and a restart does not lose a finished export.
CREATE TABLE export_jobs (
    -- opaque, unguessable (a v4 UUID): it appears in the status and file URLs
    id               TEXT PRIMARY KEY,
    -- only this user may read the status or the files
    user_id          BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    study_id         BIGINT NOT NULL,
    -- the kick-off URL, echoed in the manifest
    request          TEXT NOT NULL,
    -- `ndjson` or `parquet`
    output_format    TEXT NOT NULL CHECK (output_format IN ('ndjson', 'parquet')),
    since            TIMESTAMPTZ,
    status           TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'cancelled')),
    -- the process running the job; a running job whose process is gone is marked failed when next read
    instance         TEXT NOT NULL,
    -- the manifest's transactionTime: the kick-off time
    transaction_time TIMESTAMPTZ NOT NULL,
    progress         TEXT,
    -- [{"type": …, "name": …, "count": …}] once completed
    output           JSONB NOT NULL DEFAULT '[]',
    error            TEXT,
    finished_at      TIMESTAMPTZ
);
CREATE INDEX export_jobs_user_idx ON export_jobs (user_id, transaction_time);
