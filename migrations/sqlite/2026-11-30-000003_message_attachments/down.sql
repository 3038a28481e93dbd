ALTER TABLE messages DROP COLUMN attachment;
