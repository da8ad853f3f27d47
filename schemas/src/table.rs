//! The Arrow schema of the observation table and the builder of its record batches.
