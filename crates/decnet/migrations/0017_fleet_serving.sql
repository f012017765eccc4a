-- Whether the running mutator really serves each deployed decky: NULL
-- until it has tried (a one-shot `decnet deploy` resets it), 'ok' when
-- every listener is open, else the cause it could not (an address not on
-- this host, a port in use, no namespace…). `decnet deploy` and the API
-- report it, so a decky that nothing serves never looks deployed.
ALTER TABLE fleet_deckies ADD COLUMN serving TEXT;
