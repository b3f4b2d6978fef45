-- Workflows, and jobs that run them. Keep in step with
-- migrations/sqlite/0007_workflows.sql.

ALTER TABLE jobs DROP CONSTRAINT jobs_type_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_type_check
    CHECK (job_type IN ('text_to_image', 'image_to_image', 'upscale', 'inpaint', 'workflow'));

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
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
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
