-- Challenge/response protocols (mysql, postgres md5/SCRAM, NTLM, VNC…)
-- never show the password: their deckies log what an offline cracker
-- needs, in the cracker's own format (`hash` + `hash_type`). Such a
-- credential is stored like a password, its kind saying which it is.
ALTER TABLE credentials ADD COLUMN secret_kind TEXT NOT NULL DEFAULT 'password';
