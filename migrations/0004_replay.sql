-- Replay and dead-letter redrive (src/replay).
--
-- replay_jobs: one row per `pipeline replay --from landing`: what was asked (args), how far
--   it got (cursor: the last users_landed.id queued, in id order; queued: rows put in the
--   outbox; max_seq: the highest outbox seq it queued, to know when the relay has sent them
--   all). Each chunk's outbox rows and the cursor move commit in one statement, so a replay
--   killed at any point resumes from the cursor with no gap and no duplicate.
--   Replayed outbox rows carry no message: the relay builds it from users_landed.raw (the
--   path of rows landed before 0002), byte for byte what the source built.
-- dlq_redrive_progress: per dead-letter partition and filter (scope: the --reason/--since
--   asked, '' for none), the next offset `pipeline dlq redrive` has not yet looked at, so a
--   second run does not redo the work.
CREATE TABLE IF NOT EXISTS replay_jobs (
    id          bigserial   PRIMARY KEY,
    kind        text        NOT NULL,
    args        jsonb       NOT NULL,
    cursor      text,
    state       text        NOT NULL DEFAULT 'running',
    total       bigint      NOT NULL DEFAULT 0,
    queued      bigint      NOT NULL DEFAULT 0,
    max_seq     bigint      NOT NULL DEFAULT 0,
    started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

CREATE TABLE IF NOT EXISTS dlq_redrive_progress (
    topic       text        NOT NULL,
    scope       text        NOT NULL DEFAULT '',
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, scope, partition)
);
