-- Identifier claims are looked up only by (system, value), the primary key; no statement reads them by observation
-- id (claims are released by their full key). The secondary index cost every claim insert — the hottest write of
-- ingest, one row per uploaded identifier — about a fifth of its time, for nothing.
DROP INDEX IF EXISTS observation_identifiers_observation_idx;
