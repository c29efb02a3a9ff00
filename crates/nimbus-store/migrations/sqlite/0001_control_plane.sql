-- Control-plane schema. Tables and columns follow the platform's PostgreSQL schema;
-- SQLite stores UUIDs and RFC 3339 timestamps as TEXT and JSON as TEXT.

CREATE TABLE accounts (
    account_id TEXT PRIMARY KEY,
    name VARCHAR(64) NOT NULL UNIQUE,
    -- The 12-digit number used in ARNs.
    account_number VARCHAR(12) NOT NULL UNIQUE,
    concurrency_limit INTEGER NOT NULL DEFAULT 1000,
    created_at TEXT NOT NULL
);

CREATE TABLE api_keys (
    key_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(account_id),
    -- Keys are stored only as the lowercase hex sha256 of the key.
    key_sha256 VARCHAR(64) NOT NULL UNIQUE,
    -- The first characters of the key, so an operator can tell keys apart.
    key_prefix VARCHAR(16) NOT NULL,
    created_at TEXT NOT NULL
);

CREATE INDEX idx_api_keys_account ON api_keys(account_id);

-- A function and its $LATEST runtime, handler, role, description and code.
CREATE TABLE functions (
    function_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(account_id),
    name VARCHAR(64) NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    runtime VARCHAR(32) NOT NULL,
    handler VARCHAR(128) NOT NULL,
    role_arn VARCHAR(256),
    state VARCHAR(16) NOT NULL DEFAULT 'PENDING',
    state_reason TEXT,
    code_sha256 VARCHAR(64) NOT NULL,
    code_location VARCHAR(512) NOT NULL,
    code_size_bytes BIGINT NOT NULL,
    -- Highest version number ever published; numbers are never reused.
    last_version_number INTEGER NOT NULL DEFAULT 0,
    last_modified TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE(account_id, name)
);

CREATE INDEX idx_functions_account ON functions(account_id);
CREATE INDEX idx_functions_state ON functions(state);

CREATE TABLE function_versions (
    version_id TEXT PRIMARY KEY,
    function_id TEXT NOT NULL REFERENCES functions(function_id),
    version_number INTEGER NOT NULL,
    code_sha256 VARCHAR(64) NOT NULL,
    code_location VARCHAR(512) NOT NULL,
    code_size_bytes BIGINT NOT NULL,
    runtime VARCHAR(32) NOT NULL,
    handler VARCHAR(128) NOT NULL,
    role_arn VARCHAR(256),
    description TEXT NOT NULL DEFAULT '',
    state VARCHAR(16) NOT NULL DEFAULT 'ACTIVE',
    created_at TEXT NOT NULL,
    UNIQUE(function_id, version_number)
);

CREATE INDEX idx_versions_function ON function_versions(function_id);

-- One row per version, and one with a NULL version_id for $LATEST.
CREATE TABLE function_configs (
    config_id TEXT PRIMARY KEY,
    function_id TEXT NOT NULL REFERENCES functions(function_id),
    version_id TEXT REFERENCES function_versions(version_id),
    memory_mb INTEGER NOT NULL DEFAULT 128,
    timeout_seconds INTEGER NOT NULL DEFAULT 3,
    ephemeral_storage_mb INTEGER NOT NULL DEFAULT 512,
    environment_variables TEXT NOT NULL DEFAULT '{}',
    vpc_config TEXT,
    reserved_concurrency INTEGER,
    provisioned_concurrency INTEGER,
    layers TEXT NOT NULL DEFAULT '[]',
    dead_letter_queue VARCHAR(256),
    tracing_mode VARCHAR(16) NOT NULL DEFAULT 'PASSTHROUGH',
    updated_at TEXT NOT NULL
);

CREATE UNIQUE INDEX idx_configs_latest ON function_configs(function_id) WHERE version_id IS NULL;
CREATE UNIQUE INDEX idx_configs_version ON function_configs(version_id) WHERE version_id IS NOT NULL;

CREATE TABLE aliases (
    alias_id TEXT PRIMARY KEY,
    function_id TEXT NOT NULL REFERENCES functions(function_id),
    name VARCHAR(128) NOT NULL,
    -- '$LATEST' or a version number.
    function_version VARCHAR(16) NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    additional_version INTEGER,
    additional_weight DOUBLE PRECISION,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE(function_id, name)
);

CREATE TABLE event_source_mappings (
    mapping_id TEXT PRIMARY KEY,
    function_id TEXT NOT NULL REFERENCES functions(function_id),
    event_source_arn VARCHAR(256) NOT NULL,
    source_type VARCHAR(32) NOT NULL,
    batch_size INTEGER DEFAULT 10,
    batch_window_seconds INTEGER DEFAULT 0,
    starting_position VARCHAR(32),
    enabled BOOLEAN DEFAULT true,
    state VARCHAR(16) DEFAULT 'CREATING',
    parallelization_factor INTEGER DEFAULT 1,
    filter_criteria TEXT,
    last_processing_result TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
