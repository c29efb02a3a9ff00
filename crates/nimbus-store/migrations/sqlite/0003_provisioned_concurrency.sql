-- Provisioned concurrency configurations: one per function and qualifier (a version
-- number or an alias). The server's warm pool manager keeps `requested` slots
-- initialized for the version that the qualifier resolves to.

CREATE TABLE provisioned_concurrency (
    function_id TEXT NOT NULL REFERENCES functions(function_id),
    qualifier VARCHAR(128) NOT NULL,
    -- The version number the qualifier resolved to at the last check.
    resolved_version VARCHAR(16) NOT NULL,
    requested INTEGER NOT NULL,
    -- IN_PROGRESS, READY or FAILED.
    status VARCHAR(16) NOT NULL,
    status_reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (function_id, qualifier)
);
