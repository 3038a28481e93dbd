-- Uploaded files (attachments), kept whole in the database so that every server process
-- sharing it serves every file: the record and its bytes in one row, so an insert stores
-- both or neither. `id` is the attachment id the protocol shows; `room` is the room's name
-- (its members may read the file), `uploader` the uploader's sender key ('u:<id>',
-- 'g:<guest id>'), `size` the length of `data` in bytes.
-- The same table and column types as migrations/sqlite (one diesel schema serves both).
CREATE TABLE files (
    id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    uploader TEXT NOT NULL,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    data BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
