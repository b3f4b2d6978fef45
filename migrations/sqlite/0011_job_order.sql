-- Job order stamps (`jobs.seq` at enqueue, `jobs.dispatched_at` at lease)
-- from one counter, unique and ordered (PostgreSQL uses a sequence). It
-- starts above every stamp the per-process clock wrote before.
-- Keep in step with migrations/postgres/0011_job_order.sql.
CREATE TABLE job_order (last INTEGER NOT NULL);
INSERT INTO job_order (last) SELECT MAX(
    1,
    (SELECT COALESCE(MAX(seq), 0) FROM jobs),
    (SELECT COALESCE(MAX(dispatched_at), 0) FROM jobs),
    CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)
);
