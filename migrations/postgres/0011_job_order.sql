-- Job order stamps (`jobs.seq` at enqueue, `jobs.dispatched_at` at lease)
-- from one sequence, so they are unique and ordered across hosts. It
-- starts above every stamp the per-process clocks wrote before.
-- Keep in step with migrations/sqlite/0011_job_order.sql.
CREATE SEQUENCE job_order;
SELECT setval('job_order', GREATEST(
    1,
    (SELECT COALESCE(MAX(seq), 0) FROM jobs),
    (SELECT COALESCE(MAX(dispatched_at), 0) FROM jobs),
    (EXTRACT(EPOCH FROM now()) * 1000000)::BIGINT
));
