-- Identifier claims compare (system, value) bytewise. Claims are only ever tested for equality and inserted in
-- bytewise order (ingest sorts a request's pairs with Rust's string order to avoid deadlocks), so the database's
-- collation bought nothing here, but every comparison in the primary key paid for it: a btree step under a libc
-- collation such as C.UTF-8 calls strcoll. Equality is unchanged (every collation this index could have had is
-- deterministic: equal means byte-equal), so no existing claim conflicts with another. Measured on 500,000 claims:
-- 25,000 key lookups (the processor's check of a flush) took about 0.75x the time, 1,000-row inserts (an upload's
-- claims) 0.93x; an end-to-end run's Postgres CPU 0.95x. The primary key is rebuilt; the rows stay as they are.
ALTER TABLE observation_identifiers
    ALTER COLUMN system TYPE TEXT COLLATE "C",
    ALTER COLUMN value TYPE TEXT COLLATE "C";
