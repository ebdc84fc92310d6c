-- Core engine: scopes, records, changes (outbox and history), sessions.

-- A scope is the unit of read access and of ordered feeds. seq is taken with
-- UPDATE ... RETURNING inside the writing transaction, so seq order equals
-- commit order per scope. Changes with seq <= horizon have been pruned.
CREATE TABLE scopes (
    scope   text PRIMARY KEY,
    seq     bigint NOT NULL DEFAULT 0,
    horizon bigint NOT NULL DEFAULT 0
);

-- The current state of every record; deleted rows are tombstones.
CREATE TABLE records (
    key        text PRIMARY KEY,
    scope      text NOT NULL REFERENCES scopes (scope),
    type_name  text NOT NULL,
    payload    jsonb NOT NULL,
    version    bigint NOT NULL CHECK (version > 0),
    seq        bigint NOT NULL CHECK (seq > 0),
    deleted    boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL,
    updated_by text NOT NULL
);

CREATE INDEX records_scope_seq ON records (scope, seq);

-- One row per record change. published is set once NATS has acknowledged the
-- change; the relay re-publishes rows that stay unpublished.
CREATE TABLE changes (
    scope     text NOT NULL,
    seq       bigint NOT NULL,
    key       text NOT NULL,
    version   bigint NOT NULL,
    deleted   boolean NOT NULL,
    type_name text NOT NULL,
    payload   jsonb NOT NULL,
    actor     text NOT NULL,
    at        timestamptz NOT NULL,
    published boolean NOT NULL DEFAULT false,
    PRIMARY KEY (scope, seq)
);

CREATE INDEX changes_unpublished ON changes (at) WHERE NOT published;
CREATE INDEX changes_at ON changes (at);

-- Sessions hold only a SHA-256 hash of the opaque token.
CREATE TABLE sessions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash  bytea NOT NULL UNIQUE,
    user_id     text NOT NULL,
    roles       text[] NOT NULL DEFAULT '{}',
    server_data jsonb NOT NULL DEFAULT '{}',
    client_data jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);

CREATE INDEX sessions_user ON sessions (user_id);

---- create above / drop below ----

DROP TABLE sessions;
DROP TABLE changes;
DROP TABLE records;
DROP TABLE scopes;
