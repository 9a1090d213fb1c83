-- Cheaper landing, chosen by measurement (docs/performance.md, "Landing"):
-- * users_landed.raw is text, not jsonb: the daemon writes serde_json output (credentials
--   stripped, U+0000 replaced), so Postgres need not parse and re-encode every user; jsonb cost
--   22-32% of the landing statement. Queries read it through the view below (or `raw::jsonb`),
--   and an expression index works on `(raw::jsonb ->> 'email')` because the cast is immutable.
-- * No foreign key from users_landed.batch_id: the batch row is written by the same statement,
--   and the per-row check cost 2-5 CPU-s per million users.
-- On an existing database the type change rewrites users_landed once.
ALTER TABLE users_landed DROP CONSTRAINT IF EXISTS users_landed_batch_id_fkey;
ALTER TABLE users_landed ALTER COLUMN raw TYPE text USING raw::text;

CREATE OR REPLACE VIEW users_landed_json AS
    SELECT id, fetched_at, batch_id, raw::jsonb AS raw FROM users_landed;
