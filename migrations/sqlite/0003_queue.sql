-- GPU job queue, workers, generated images and boards.
-- Keep in step with migrations/postgres/0003_queue.sql.

CREATE TABLE jobs (
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
    CONSTRAINT jobs_status_check CHECK (status IN ('queued', 'processing', 'completed', 'failed', 'cancelled')),
    CONSTRAINT jobs_type_check CHECK (job_type IN ('text_to_image', 'image_to_image', 'upscale', 'inpaint'))
);
-- The waiting jobs only: queue summaries and leasing read this index.
CREATE INDEX jobs_waiting ON jobs (user_id, seq) WHERE status = 'queued';
CREATE INDEX jobs_user ON jobs (user_id, queued_at DESC);
CREATE INDEX jobs_user_dispatch ON jobs (user_id, dispatched_at);
CREATE INDEX jobs_lease ON jobs (status, lease_expires_at);

-- Queued jobs per user, kept in the transactions that move jobs in and out
-- of 'queued', so caps and queue positions cost O(users), not O(jobs).
CREATE TABLE queue_counters (
    user_id  TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    -- The rank of the tier of the user's latest enqueue.
    priority BIGINT NOT NULL,
    queued   BIGINT NOT NULL,
    CONSTRAINT queue_counters_queued_check CHECK (queued >= 0)
);

CREATE TABLE workers (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    backend      TEXT NOT NULL,
    -- JSON list of the model names this worker serves.
    models       TEXT NOT NULL,
    paused       BOOLEAN NOT NULL DEFAULT FALSE,
    started_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL
);

CREATE TABLE boards (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX boards_user ON boards (user_id, created_at);

CREATE TABLE images (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    job_id       TEXT REFERENCES jobs (id) ON DELETE SET NULL,
    blob_key     TEXT NOT NULL,
    thumb_key    TEXT NOT NULL,
    width        BIGINT NOT NULL,
    height       BIGINT NOT NULL,
    file_size    BIGINT NOT NULL,
    mime_type    TEXT NOT NULL,
    is_starred   BOOLEAN NOT NULL DEFAULT FALSE,
    is_public    BOOLEAN NOT NULL DEFAULT FALSE,
    share_token  TEXT,
    -- Generation metadata (model, model_hash, prompt, seed ...), JSON.
    metadata     TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
CREATE INDEX images_user ON images (user_id, created_at DESC);

CREATE TABLE board_images (
    board_id TEXT NOT NULL REFERENCES boards (id) ON DELETE CASCADE,
    image_id TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    added_at TEXT NOT NULL,
    PRIMARY KEY (board_id, image_id)
);
