-- Topologies, their deckies, and the queue of mutations the mutator drains.
-- Timestamps are unix seconds (REAL), like the bus envelope's `ts`.

CREATE TABLE topologies (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'deploying', 'active', 'degraded', 'failed')),
    -- Bumped by every accepted mutation; clients send it back as
    -- `expected_version` to detect that someone else changed the plan.
    version     INTEGER NOT NULL DEFAULT 1,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);

CREATE TABLE topology_deckies (
    topology_id TEXT NOT NULL REFERENCES topologies(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    -- JSON array of catalogue service names, in the order given.
    services    TEXT NOT NULL,
    -- Keeps the order deckies were declared/added in.
    position    INTEGER NOT NULL,
    PRIMARY KEY (topology_id, name)
);

CREATE TABLE topology_mutations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    topology_id TEXT NOT NULL REFERENCES topologies(id) ON DELETE CASCADE,
    op          TEXT NOT NULL CHECK (op IN ('add_decky', 'remove_decky', 'set_services')),
    payload     TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'applying', 'applied', 'failed')),
    reason      TEXT,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);

-- The claim query: oldest pending row of one topology.
CREATE INDEX topology_mutations_by_state ON topology_mutations (topology_id, state, created_at, id);
