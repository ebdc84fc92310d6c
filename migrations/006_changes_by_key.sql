-- A stream that resumes a record target at version v replays the record's
-- changes after v, found by key.
CREATE INDEX changes_key_version ON changes (key, version);

---- create above / drop below ----

DROP INDEX changes_key_version;
