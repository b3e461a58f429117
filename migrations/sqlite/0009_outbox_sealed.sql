-- Outbox bodies are sealed at rest since this version (src/auth/mail_seal.rs)
-- and blanked once sent or given up. Rows written before held their text in
-- clear, live tokens and codes included: nothing of them may stay readable.
-- Finished ones lose their body; pending ones cannot be sealed here (the key
-- is not in the database), so they are given up (the user asks again).
UPDATE mail_outbox SET body = ''
    WHERE (sent_at IS NOT NULL OR failed_at IS NOT NULL) AND body <> '';
UPDATE mail_outbox SET body = '', failed_at = created_at, claimed_until = NULL,
    last_error = 'unreadable: written in clear before bodies were sealed'
    WHERE sent_at IS NULL AND failed_at IS NULL AND body NOT LIKE 'v1.%';
