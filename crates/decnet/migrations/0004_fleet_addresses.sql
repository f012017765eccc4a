-- Each fleet decky's own address (native driver: its listeners bind there).
-- NULL for deckies deployed by drivers that do not use one.
ALTER TABLE fleet_deckies ADD COLUMN address TEXT;
