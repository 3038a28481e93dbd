-- The file a message carries, if any: chat_core::AttachmentInfo as JSON text
-- ({"id": …, "name": …, "content_type": …, "size": …}), only ever read back whole.
-- NULL for messages without one, and for every message stored before this migration.
ALTER TABLE messages ADD COLUMN attachment TEXT;
