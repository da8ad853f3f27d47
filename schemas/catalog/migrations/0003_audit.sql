-- The audit trail: every read, search and export of health data (who, which query, how many rows, when).
-- Rows are appended in batches by the API's audit writer and never updated.
CREATE TABLE audit_events (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- when the request arrived
    at            TIMESTAMPTZ NOT NULL,
    -- NULL: the request was not authenticated (it was refused)
    user_id       BIGINT,
    action        TEXT NOT NULL CHECK (action IN ('read', 'search', 'export', 'analytics')),
    -- the FHIR type or REST resource the request names (e.g. `Observation`, `patients`)
    resource_type TEXT NOT NULL,
    method        TEXT NOT NULL,
    path          TEXT NOT NULL,
    -- the query string, or the form body of a POST `_search`
    query         TEXT NOT NULL,
    status        SMALLINT NOT NULL,
    -- rows returned (entries of a page, or the count of `_summary=count`); NULL when the handler does not say
    row_count     BIGINT,
    duration_us   BIGINT NOT NULL,
    request_id    TEXT
);
CREATE INDEX audit_events_at_idx ON audit_events (at);
CREATE INDEX audit_events_user_idx ON audit_events (user_id, at);
