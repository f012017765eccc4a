-- When a user's password was last changed (unix seconds), so tokens issued
-- before it are refused: `decnet user passwd` then also revokes every token
-- a leaked or guessed password may have produced. NULL: never changed.
ALTER TABLE users ADD COLUMN password_changed_at REAL;
