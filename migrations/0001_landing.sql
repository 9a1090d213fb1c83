-- Landing tables and the transactional outbox.
--
-- landing_batches: one row per fetched page. (seed, page) is unique for seeded fetches, so a
--   page fetched twice (retry, restart) lands once; unseeded fetches have page NULL.
-- users_landed: the raw user (credentials stripped before it gets here), keyed by the
--   record id (login.uuid). Append-only.
-- outbox: rows landed but not yet acknowledged by Kafka. The relay reads it in seq order and
--   deletes what Kafka acknowledged. Because rows are *deleted* rather than passed by a
--   cursor, a transaction that commits late (with a lower seq than rows already relayed)
--   is still found on the next poll: there is no gap.
CREATE TABLE IF NOT EXISTS landing_batches (
    batch_id   bigserial   PRIMARY KEY,
    seed       text        NOT NULL DEFAULT '',
    page       integer,
    fetched_at timestamptz NOT NULL,
    users      integer     NOT NULL,
    landed_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (seed, page)
);

CREATE TABLE IF NOT EXISTS users_landed (
    id         text        PRIMARY KEY,
    fetched_at timestamptz NOT NULL,
    batch_id   bigint      NOT NULL REFERENCES landing_batches (batch_id),
    raw        jsonb       NOT NULL
);

CREATE TABLE IF NOT EXISTS outbox (
    seq     bigserial PRIMARY KEY,
    user_id text      NOT NULL
);
