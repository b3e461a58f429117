-- Rate limits shared by every instance (DESIGN.md, Scale): one row per
-- limited key (the SHA-256 of 'ip:<address>' or 'email:<normalised email>',
-- so the table holds no addresses nor emails), a GCRA cell.
-- tat_us is the key's theoretical arrival time in unix microseconds: the
-- budget is full when tat_us <= now, and a request is allowed when
-- max(tat_us, now) + interval - now <= the burst. `allowed` is the verdict of
-- the latest charge, so the one upsert that charges also says whether it was
-- allowed (PostgreSQL's RETURNING sees only the new row).
--
-- UNLOGGED: counters that live for a minute need no WAL; a crash or a
-- failover empties the table, which only refills every budget once.
CREATE UNLOGGED TABLE rate_limits (
    key TEXT PRIMARY KEY,
    tat_us BIGINT NOT NULL,
    allowed BOOLEAN NOT NULL
);
-- Housekeeping deletes rows whose budget is full again, a bounded batch at a time.
CREATE INDEX rate_limits_tat_idx ON rate_limits (tat_us);
