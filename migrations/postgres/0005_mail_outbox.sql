-- The mail outbox (DESIGN.md, "Mail"): a mail is written here in the same
-- transaction as the change that causes it, and delivered by the background
-- sender (src/mail), which claims due rows with a lease, sends, and records
-- the attempt. A row is pending until sent_at or failed_at is set; finished
-- rows are deleted by housekeeping after a retention.
CREATE TABLE mail_outbox (
    id              UUID PRIMARY KEY,
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,               -- plain text; carries codes and tokens
    created_at      TIMESTAMPTZ NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,   -- delivery attempts begun
    next_attempt_at TIMESTAMPTZ NOT NULL,        -- not tried before this time (backoff)
    claimed_until   TIMESTAMPTZ,                 -- a sender's lease: nobody else tries it before
    sent_at         TIMESTAMPTZ,
    failed_at       TIMESTAMPTZ,                 -- gave up after MAIL_MAX_ATTEMPTS
    last_error      TEXT                         -- the transport's error class, never the body
);
-- The sender's question: which pending mails are due?
CREATE INDEX mail_outbox_due_idx ON mail_outbox (next_attempt_at)
    WHERE sent_at IS NULL AND failed_at IS NULL;
-- Which mails went to an address (support, tests).
CREATE INDEX mail_outbox_recipient_idx ON mail_outbox (recipient);
-- Housekeeping: finished mails past the retention.
CREATE INDEX mail_outbox_sent_at_idx ON mail_outbox (sent_at) WHERE sent_at IS NOT NULL;
CREATE INDEX mail_outbox_failed_at_idx ON mail_outbox (failed_at) WHERE failed_at IS NOT NULL;
