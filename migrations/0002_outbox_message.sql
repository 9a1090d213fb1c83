-- The outbox carries the Kafka message, built once at the source (model::split_page): the
-- relay produces `message` as it is, with `user_id` as the key and `fetched_at_ms` as the
-- header, without a JOIN and without JSON work. Rows landed by an older version have no
-- message; the relay builds theirs from users_landed.raw.
ALTER TABLE outbox
    ADD COLUMN IF NOT EXISTS fetched_at_ms bigint,
    ADD COLUMN IF NOT EXISTS message bytea;

-- Wakes relays (of this and other daemons on the database) when rows are committed: a
-- statement-level trigger, so any writer of the outbox (landing, replay) notifies, once per
-- statement; the notification is delivered at commit.
CREATE OR REPLACE FUNCTION pipeline_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pipeline_outbox', '');
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS outbox_notify ON outbox;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION pipeline_outbox_notify();
