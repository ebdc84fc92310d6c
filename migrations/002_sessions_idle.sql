-- Idle expiry: when a session was last used. Sluice touches it at most
-- about once a minute per session, so it lags real use by up to that.
ALTER TABLE sessions ADD COLUMN last_seen_at timestamptz NOT NULL DEFAULT now();

---- create above / drop below ----

ALTER TABLE sessions DROP COLUMN last_seen_at;
