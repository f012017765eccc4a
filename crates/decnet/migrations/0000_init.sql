-- Marks the schema as managed by decnet; tables arrive in later migrations.
CREATE TABLE IF NOT EXISTS decnet_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
