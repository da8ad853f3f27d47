-- Rows per patient of every Parquet file, written with the file's catalog row. A search's exact `total` and a
-- `_summary=count` over the patients and codes a caller may see are sums of these rows, so they need no Parquet
-- read; files catalogued before this table existed have `patient_rows_known = false` and are counted by a scan.
ALTER TABLE parquet_files ADD COLUMN patient_rows_known BOOLEAN NOT NULL DEFAULT false;
CREATE TABLE parquet_file_patient_rows (
    file_id    UUID NOT NULL REFERENCES parquet_files (id) ON DELETE CASCADE,
    patient_id BIGINT NOT NULL,
    row_count  BIGINT NOT NULL CHECK (row_count > 0),
    -- a search counts one patient's rows (or a few patients') across many files
    PRIMARY KEY (patient_id, file_id)
);
-- deleting a file row (the janitor) finds its patients' rows
CREATE INDEX parquet_file_patient_rows_file_idx ON parquet_file_patient_rows (file_id);
