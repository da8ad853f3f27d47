-- A running export proves it is alive by moving `heartbeat_at` every few seconds. A job whose heartbeat is
-- stale lost its process (a crash, a restart, a scaled-down replica) and is marked failed; comparing process
-- names instead would fail the jobs of every other live replica.
ALTER TABLE export_jobs ADD COLUMN heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now();
CREATE INDEX export_jobs_running_idx ON export_jobs (heartbeat_at) WHERE status = 'running';
