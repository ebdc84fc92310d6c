-- Presence: who has a stream open on a scope, per instance. Rows are
-- refreshed by their instance's heartbeat and expire when it stops.
CREATE TABLE presence (
    scope      text NOT NULL,
    user_id    text NOT NULL,
    instance   text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (scope, user_id, instance)
);

CREATE INDEX presence_expires ON presence (expires_at);

---- create above / drop below ----

DROP TABLE presence;
