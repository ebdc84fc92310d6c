-- Idempotency keys: a retried mutating RPC with the same key returns the
-- original result and writes nothing. Recorded in the writing transaction.
CREATE TABLE idempotency (
    principal    text NOT NULL,
    key          text NOT NULL,
    procedure    text NOT NULL,
    request_hash bytea NOT NULL,
    changes      jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, key)
);

CREATE INDEX idempotency_created ON idempotency (created_at);

---- create above / drop below ----

DROP TABLE idempotency;
