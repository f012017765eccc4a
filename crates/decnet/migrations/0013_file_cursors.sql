-- One cursor per ingested file, replacing the single `cursors` row named
-- 'ingester' that every ingester shared: `decnet api` tailing the local
-- ingest log and `decnet ingest` tailing the listener's master.json moved
-- one cursor back and forth between two files and stored each again and
-- again. A file is (path, inode): `path` is the absolute path the ingester
-- follows (rotated generations keep the path they were read under), and
-- `seq` orders the generations of one path (the file read after another
-- gets its seq + 1, so a row left by a deleted file whose inode number was
-- reused is recognised as stale and started over). `tail_check` holds the
-- bytes just before `position`, to recognise a file truncated in place
-- and refilled (copytruncate) before reading on from the middle of a line.
-- `modified` is the file's last write time as the reader last saw it: when
-- the file is gone (deleted, compressed) the generations written after it
-- are the ones to read next. `finished` says the reader had read it to its
-- end after it was rotated away: its disappearance then loses nothing.
CREATE TABLE file_cursors (
    path       TEXT NOT NULL,
    inode      INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    position   INTEGER NOT NULL DEFAULT 0,
    tail_check BLOB,
    modified   REAL NOT NULL DEFAULT 0,
    finished   INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL,
    PRIMARY KEY (path, inode)
);

-- The shared cursor carries over to the file it was last on, so an
-- upgrade does not store that file a second time.
INSERT INTO file_cursors (path, inode, seq, position, tail_check, updated_at)
SELECT file, inode, 1, position, NULL, updated_at FROM cursors
WHERE name = 'ingester' AND file IS NOT NULL AND inode IS NOT NULL;
DELETE FROM cursors WHERE name = 'ingester';
