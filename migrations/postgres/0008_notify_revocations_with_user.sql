-- The revocation feed (GET /revocations) tells backends whose session was
-- revoked, so every instance needs the user id with each revocation it hears
-- of. The trigger now also notifies channel auth_session_revoked_v2 with
-- "<session uuid> <revoked_at, unix ms> <user uuid>".
--
-- The old channel and payload stay, for instances not yet upgraded during a
-- rolling upgrade (they would take the longer payload for a malformed one and
-- wait for their 30 s reload); a later migration can drop them.

CREATE OR REPLACE FUNCTION notify_session_revoked() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    at_ms TEXT := floor(extract(epoch FROM NEW.revoked_at) * 1000)::bigint::text;
BEGIN
    PERFORM pg_notify('auth_session_revoked', NEW.id::text || ' ' || at_ms);
    PERFORM pg_notify(
        'auth_session_revoked_v2',
        NEW.id::text || ' ' || at_ms || ' ' || NEW.user_id::text
    );
    RETURN NULL;
END
$$;
