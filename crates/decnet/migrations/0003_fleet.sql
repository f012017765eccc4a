-- The mutator's fleet: one row per decky ever deployed from a fleet file.
-- services is a JSON array of catalogue names; last_mutated is unix seconds
-- (NULL until first deployed). A torn-down decky keeps its row with
-- deployed = 0 and services '[]', so its history stays explainable.
CREATE TABLE IF NOT EXISTS fleet_deckies (
    name             TEXT PRIMARY KEY,
    archetype        TEXT,
    services         TEXT    NOT NULL DEFAULT '[]',
    interval_minutes INTEGER NOT NULL CHECK (interval_minutes > 0),
    last_mutated     REAL,
    deployed         INTEGER NOT NULL DEFAULT 0
);
