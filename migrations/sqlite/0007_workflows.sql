-- Workflows, and jobs that run them. Keep in step with
-- migrations/postgres/0007_workflows.sql.
--
-- SQLite cannot alter a CHECK, so `jobs` is rebuilt to allow the
-- `workflow` job type. sqlx runs a migration in a transaction, where
-- foreign keys cannot be turned off: dropping the old table sets
-- `images.job_id` to NULL (ON DELETE SET NULL), so the links are kept
-- aside and put back once the new table has the rows.
CREATE TEMP TABLE image_jobs AS SELECT id, job_id FROM images WHERE job_id IS NOT NULL;
CREATE TABLE jobs_new (
    id                TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    job_type          TEXT NOT NULL,
    status            TEXT NOT NULL,
    -- The rank of the user's tier at enqueue: higher is served first.
    priority          BIGINT NOT NULL,
    model             TEXT NOT NULL,
    -- The validated request (seed resolved, nodes pinned to versions), JSON.
    params            TEXT NOT NULL,
    hold_id           TEXT NOT NULL,
    estimated_credits BIGINT NOT NULL,
    credits_used      BIGINT,
    credits_refunded  BIGINT,
    -- Enqueue order in microseconds since the epoch (kept on requeue).
    seq               BIGINT NOT NULL,
    attempts          BIGINT NOT NULL DEFAULT 0,
    worker_id         TEXT,
    lease_token       TEXT,
    lease_expires_at  TEXT,
    -- When this job was last leased, in microseconds (round-robin clock).
    dispatched_at     BIGINT,
    progress          BIGINT NOT NULL DEFAULT 0,
    step              BIGINT NOT NULL DEFAULT 0,
    total_steps       BIGINT NOT NULL DEFAULT 0,
    gpu_seconds       DOUBLE PRECISION,
    gpu_started_at    TEXT,
    gpu_finished_at   TEXT,
    error_code        TEXT,
    error_message     TEXT,
    result_image_ids  TEXT,
    save_to_board     TEXT,
    queued_at         TEXT NOT NULL,
    started_at        TEXT,
    completed_at      TEXT,
    node_seconds      DOUBLE PRECISION,
    CONSTRAINT jobs_status_check CHECK (status IN ('queued', 'processing', 'completed', 'failed', 'cancelled')),
    CONSTRAINT jobs_type_check CHECK (job_type IN ('text_to_image', 'image_to_image', 'upscale', 'inpaint', 'workflow'))
);
INSERT INTO jobs_new (id, user_id, job_type, status, priority, model, params, hold_id, estimated_credits, credits_used, credits_refunded, seq, attempts, worker_id, lease_token, lease_expires_at, dispatched_at, progress, step, total_steps, gpu_seconds, gpu_started_at, gpu_finished_at, error_code, error_message, result_image_ids, save_to_board, queued_at, started_at, completed_at, node_seconds)
    SELECT id, user_id, job_type, status, priority, model, params, hold_id, estimated_credits, credits_used, credits_refunded, seq, attempts, worker_id, lease_token, lease_expires_at, dispatched_at, progress, step, total_steps, gpu_seconds, gpu_started_at, gpu_finished_at, error_code, error_message, result_image_ids, save_to_board, queued_at, started_at, completed_at, node_seconds FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
CREATE INDEX jobs_waiting ON jobs (user_id, seq) WHERE status = 'queued';
CREATE INDEX jobs_user ON jobs (user_id, queued_at DESC);
CREATE INDEX jobs_user_dispatch ON jobs (user_id, dispatched_at);
CREATE INDEX jobs_lease ON jobs (status, lease_expires_at);
UPDATE images SET job_id = (SELECT t.job_id FROM temp.image_jobs t WHERE t.id = images.id)
    WHERE id IN (SELECT id FROM temp.image_jobs);
DROP TABLE temp.image_jobs;

-- Workflows a user builds once and runs many times: a graph of typed
-- nodes, or a published workflow component pinned to a version.
CREATE TABLE workflows (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    description      TEXT NOT NULL DEFAULT '',
    -- graph | component
    kind             TEXT NOT NULL,
    -- The checked definition, JSON (what the API shows and a run uses).
    definition       TEXT NOT NULL,
    -- Bytes of the definition as stored, counted against storage.
    definition_bytes BIGINT NOT NULL,
    is_public        BOOLEAN NOT NULL DEFAULT FALSE,
    -- The public workflow this one was copied from, if any.
    copied_from      TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    CONSTRAINT workflows_kind_check CHECK (kind IN ('graph', 'component'))
);
CREATE INDEX workflows_user ON workflows (user_id, created_at, id);
CREATE INDEX workflows_public ON workflows (created_at, id) WHERE is_public;

CREATE TABLE workflow_tags (
    workflow_id TEXT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    tag         TEXT NOT NULL,
    PRIMARY KEY (workflow_id, tag)
);
CREATE INDEX workflow_tags_tag ON workflow_tags (tag, workflow_id);

-- Workflow definitions count against storage with images.
ALTER TABLE storage_usage ADD COLUMN workflow_bytes BIGINT NOT NULL DEFAULT 0
    CHECK (workflow_bytes >= 0);
