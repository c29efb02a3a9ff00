-- Invocation records, function logs and the durable queue of asynchronous events.

CREATE TABLE invocations (
    -- Retries of an asynchronous event share its request id, so each run gets a row.
    invocation_id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    function_id TEXT NOT NULL,
    -- '$LATEST' or the version number that ran.
    version VARCHAR(16) NOT NULL,
    account_id TEXT NOT NULL,
    trigger_type VARCHAR(16) NOT NULL,
    -- 'RequestResponse' or 'Event'.
    invocation_type VARCHAR(16) NOT NULL,
    start_time TEXT NOT NULL,
    end_time TEXT NOT NULL,
    duration_ms DOUBLE PRECISION NOT NULL,
    billed_duration_ms BIGINT NOT NULL,
    memory_used_mb INTEGER NOT NULL,
    init_duration_ms DOUBLE PRECISION,
    status VARCHAR(16) NOT NULL,
    error_type VARCHAR(128),
    cold_start BOOLEAN NOT NULL,
    slot_id TEXT,
    trace_id TEXT NOT NULL
);

CREATE INDEX idx_invocations_function ON invocations(function_id, start_time);
CREATE INDEX idx_invocations_request ON invocations(request_id);

CREATE TABLE log_events (
    -- Insertion order, used as the cursor of follow-mode reads.
    sequence INTEGER PRIMARY KEY AUTOINCREMENT,
    function_id TEXT NOT NULL,
    request_id TEXT,
    -- Unix epoch milliseconds.
    timestamp_ms BIGINT NOT NULL,
    message TEXT NOT NULL
);

CREATE INDEX idx_log_events_function ON log_events(function_id, sequence);
CREATE INDEX idx_log_events_request ON log_events(request_id);
CREATE INDEX idx_log_events_time ON log_events(timestamp_ms);

CREATE TABLE async_events (
    -- The request id returned with the 202.
    event_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    function_id TEXT NOT NULL,
    qualifier VARCHAR(128),
    payload BLOB NOT NULL,
    client_context TEXT,
    trace_id TEXT NOT NULL,
    -- Runs so far; Lambda retries a failed asynchronous event twice.
    attempts INTEGER NOT NULL DEFAULT 0,
    -- Unix epoch milliseconds of the next run.
    next_attempt_ms BIGINT NOT NULL,
    -- A dispatcher that claimed the event owns it until then; a crash frees it.
    lease_until_ms BIGINT,
    created_ms BIGINT NOT NULL
);

CREATE INDEX idx_async_events_due ON async_events(next_attempt_ms);
