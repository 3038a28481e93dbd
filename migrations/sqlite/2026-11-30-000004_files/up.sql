-- Uploaded files (attachments), kept whole in the database: the record and its bytes in one
-- row, so an insert stores both or neither. `id` is the attachment id the protocol shows;
-- `room` is the room's name (its members may read the file), `uploader` the uploader's
-- sender key ('u:<id>', 'g:<guest id>'), `size` the length of `data` in bytes.
CREATE TABLE files (
    id TEXT PRIMARY KEY NOT NULL,
    room TEXT NOT NULL,
    uploader TEXT NOT NULL,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    data BLOB NOT NULL,
    created_at BIGINT NOT NULL
);
