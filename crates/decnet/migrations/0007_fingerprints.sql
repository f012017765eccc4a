-- Active (prober) and passive (sniffer) fingerprints per attacker. `kind`
-- is the probe or event type (jarm, hassh, tls_certificate, tcpfp,
-- tls_client_hello, tcp_syn_fingerprint, ssh_client_banner, …); `hash` the
-- value that identifies it (JA3/JA4/JARM/HASSH/cert sha256…); `details`
-- the full published payload as JSON. port is 0 when it does not apply.
CREATE TABLE fingerprints (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    attacker_ip TEXT NOT NULL,
    kind        TEXT NOT NULL,
    port        INTEGER NOT NULL DEFAULT 0,
    hash        TEXT NOT NULL,
    details     TEXT NOT NULL DEFAULT '{}',
    source      TEXT NOT NULL CHECK (source IN ('prober', 'sniffer')),
    first_seen  REAL NOT NULL,
    last_seen   REAL NOT NULL,
    UNIQUE (attacker_ip, kind, port, source)
);
CREATE INDEX fingerprints_by_hash ON fingerprints (kind, hash);
