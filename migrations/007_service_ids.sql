-- Service principals act as "service:<name>"; user ids can no longer take
-- that form. A session opened before, under a user id of that form (only
-- the development `none` authenticator or a webhook could hand one out),
-- would act as the service's namespace: revoke it. Rows written by
-- services under their bare name before this migration are not rewritten
-- (the database does not know which names were services); see
-- docs/SECURITY.md, "Service principals".
UPDATE sessions SET revoked_at = now()
WHERE revoked_at IS NULL AND lower(left(user_id, 8)) = 'service:';

---- create above / drop below ----

-- Nothing to undo: revoked sessions stay revoked.
