-- Jobs: side effects of committed writes (notifications, e-mail). A job is
-- inserted in the writing transaction, so it commits or rolls back with the
-- records. Workers claim due rows with FOR UPDATE SKIP LOCKED and hold them
-- for a lease (locked_until); a job whose lease expired is claimed again.
-- attempts counts claims. A finished job has done_at set: last_error NULL
-- means it succeeded, otherwise it failed for good (dead).
CREATE TABLE jobs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         text NOT NULL,
    payload      jsonb NOT NULL,
    attempts     int NOT NULL DEFAULT 0,
    max_attempts int NOT NULL DEFAULT 10 CHECK (max_attempts > 0),
    run_at       timestamptz NOT NULL DEFAULT now(),
    locked_until timestamptz,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    done_at      timestamptz
);

-- The claim query: due, unfinished jobs in run_at order.
CREATE INDEX jobs_due ON jobs (run_at) WHERE done_at IS NULL;
-- Pruning of finished jobs.
CREATE INDEX jobs_done ON jobs (done_at) WHERE done_at IS NOT NULL;

---- create above / drop below ----

DROP TABLE jobs;
