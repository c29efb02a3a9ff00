-- Worker hosts of the running server. The server writes each host's zone and last
-- heartbeat every second and reads desired_state back, so `nimbus admin worker
-- set-state` can drain a host of a running server through the database.
CREATE TABLE worker_hosts (
    host_id           INTEGER PRIMARY KEY,
    availability_zone TEXT NOT NULL,
    -- ACTIVE, DRAINING or MAINTENANCE.
    desired_state     TEXT NOT NULL DEFAULT 'ACTIVE',
    -- Unix milliseconds of the last heartbeat.
    last_heartbeat_ms INTEGER NOT NULL
);
