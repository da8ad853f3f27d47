-- An export's files are served only while the rights it was made under last and until it expires.
--
-- `contents` is what the files hold, {system: {code: [patient ids]}}: every status or file request checks that the
-- caller may still see each of these (patient, code) pairs in the study, so a revoked consent or a lost membership
-- withdraws the export. `expires_at` is when a completed export's files go (`JHE_EXPORT_TTL` after it completed).
-- An export that expired or was withdrawn keeps its row, so its status says why it is gone (410);
-- `files_deleted_at` records that its files were removed, and until then the sweeper retries.
ALTER TABLE export_jobs DROP CONSTRAINT export_jobs_status_check;
ALTER TABLE export_jobs ADD CONSTRAINT export_jobs_status_check
    CHECK (status IN ('running', 'completed', 'failed', 'cancelled', 'expired', 'withdrawn'));
ALTER TABLE export_jobs ADD COLUMN contents JSONB NOT NULL DEFAULT '{}';
ALTER TABLE export_jobs ADD COLUMN expires_at TIMESTAMPTZ;
ALTER TABLE export_jobs ADD COLUMN files_deleted_at TIMESTAMPTZ;
-- exports completed before their contents were recorded cannot be checked against consent: they expire now
UPDATE export_jobs SET expires_at = now() WHERE status = 'completed';
CREATE INDEX export_jobs_expiry_idx ON export_jobs (expires_at) WHERE status = 'completed';
CREATE INDEX export_jobs_files_left_idx ON export_jobs (id)
    WHERE status IN ('expired', 'withdrawn') AND files_deleted_at IS NULL;
