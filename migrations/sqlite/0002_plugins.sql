-- Plugin registry: one row per plugin name (owned by its first publisher),
-- one per published version. Component bytes live in blob storage under
-- their sha256. Keep in step with migrations/postgres/0002_plugins.sql.

CREATE TABLE plugins (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    owner_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    description TEXT NOT NULL,
    visibility  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    CONSTRAINT plugins_name_key UNIQUE (name),
    CONSTRAINT plugins_kind_check CHECK (kind IN ('node', 'workflow', 'billing')),
    CONSTRAINT plugins_visibility_check CHECK (visibility IN ('public', 'private'))
);

CREATE TABLE plugin_versions (
    id          TEXT PRIMARY KEY,
    plugin_id   TEXT NOT NULL REFERENCES plugins (id) ON DELETE CASCADE,
    version     TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    size_bytes  BIGINT NOT NULL,
    abi_version TEXT NOT NULL,
    node_kind   TEXT,
    parameters_schema TEXT,
    created_at  TEXT NOT NULL,
    yanked_at   TEXT,
    CONSTRAINT plugin_versions_key UNIQUE (plugin_id, version)
);
CREATE INDEX plugin_versions_plugin ON plugin_versions (plugin_id, created_at DESC);
