-- Push every session revocation to every instance (LISTEN auth_session_revoked).
-- A trigger, not application code: the notification is sent by the very
-- transaction that revokes, delivered only if it commits, and no code path
-- that revokes can forget it. Payload: "<session uuid> <revoked_at, unix ms>".

CREATE FUNCTION notify_session_revoked() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(
        'auth_session_revoked',
        NEW.id::text || ' ' || floor(extract(epoch FROM NEW.revoked_at) * 1000)::bigint::text
    );
    RETURN NULL;
END
$$;

CREATE TRIGGER sessions_revoked_notify
    AFTER UPDATE OF revoked_at ON sessions
    FOR EACH ROW
    WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION notify_session_revoked();
