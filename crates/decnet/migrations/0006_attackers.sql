-- The profiler's fold of `logs` per attacker IP. List columns are JSON
-- arrays (deckies in order of first contact).
CREATE TABLE attackers (
    ip               TEXT PRIMARY KEY,
    first_seen       REAL NOT NULL,
    last_seen        REAL NOT NULL,
    event_count      INTEGER NOT NULL DEFAULT 0,
    service_count    INTEGER NOT NULL DEFAULT 0,
    decky_count      INTEGER NOT NULL DEFAULT 0,
    services         TEXT NOT NULL DEFAULT '[]',
    deckies          TEXT NOT NULL DEFAULT '[]',
    traversal_path   TEXT NOT NULL DEFAULT '',
    is_traversal     INTEGER NOT NULL DEFAULT 0,
    credential_count INTEGER NOT NULL DEFAULT 0,
    commands         TEXT NOT NULL DEFAULT '[]',
    fingerprints     TEXT NOT NULL DEFAULT '[]',
    behavior         TEXT NOT NULL DEFAULT 'unknown',
    -- Set once attacker.observed has been published for this IP, ever.
    observed_published INTEGER NOT NULL DEFAULT 0,
    identity_id      INTEGER,
    updated_at       REAL NOT NULL
);
CREATE INDEX attackers_by_last_seen ON attackers (last_seen);
CREATE INDEX attackers_by_first_seen ON attackers (first_seen);
CREATE INDEX attackers_by_events ON attackers (event_count);

-- Identities: attackers linked by a shared strong fingerprint.
CREATE TABLE identities (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    -- JSON array of the fingerprint hashes that link the members.
    fingerprints TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE identity_members (
    identity_id INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    attacker_ip TEXT NOT NULL,
    PRIMARY KEY (attacker_ip)
);
CREATE INDEX identity_members_by_identity ON identity_members (identity_id);

-- Every deployed decky transition, as the mutator emitted it (the ingest
-- log stays the audit record; this table serves the API and correlation).
CREATE TABLE decky_mutations (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp    REAL NOT NULL,
    decky        TEXT NOT NULL,
    old_services TEXT NOT NULL,
    new_services TEXT NOT NULL,
    trigger      TEXT NOT NULL,
    actor        TEXT
);
CREATE INDEX decky_mutations_by_decky ON decky_mutations (decky, timestamp);
