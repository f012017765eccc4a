-- A fleet decky's persona overrides from the fleet file: a JSON object of
-- persona fields merged over the derived persona. NULL: derived as is.
ALTER TABLE fleet_deckies ADD COLUMN persona TEXT;
