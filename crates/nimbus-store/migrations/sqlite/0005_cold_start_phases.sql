-- Cold-start phases of an invocation, in milliseconds. All are NULL on warm starts and
-- on rows written before this migration. runtime_init_ms and user_init_ms are also NULL
-- when the runtime did not report when it became ready, which only Nimbus's own
-- bootstraps do. code_tier is the code cache tier that served the code: L1, L2 or L3 (the origin).
ALTER TABLE invocations ADD COLUMN sandbox_ms REAL;
ALTER TABLE invocations ADD COLUMN code_ms REAL;
ALTER TABLE invocations ADD COLUMN code_tier TEXT;
ALTER TABLE invocations ADD COLUMN runtime_init_ms REAL;
ALTER TABLE invocations ADD COLUMN user_init_ms REAL;
