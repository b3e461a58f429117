-- Data migrations done in code (not expressible in SQL, e.g. Unicode
-- normalisation of stored emails), each recorded once it completed.
CREATE TABLE data_migrations (
    name         TEXT PRIMARY KEY NOT NULL,
    completed_at TEXT NOT NULL
);
