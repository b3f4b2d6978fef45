-- Hardening of the host boundary. Keep in step with
-- migrations/postgres/0004_hardening.sql.

-- Seconds pre- and post-nodes occupied the worker (charged with the GPU
-- time: the user chose that code).
ALTER TABLE jobs ADD COLUMN node_seconds DOUBLE PRECISION;

-- SHA-256 of the secret a worker process registered with: only that
-- process may renew or remove its registration.
ALTER TABLE workers ADD COLUMN key_hash TEXT NOT NULL DEFAULT '';
