-- Operators of the control plane. Passwords are argon2id PHC strings; the
-- role decides what a bearer token may do (viewer reads, admin acts).
CREATE TABLE IF NOT EXISTS users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('admin', 'viewer')),
    created_at    REAL    NOT NULL
);
