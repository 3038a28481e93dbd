-- Rooms, their messages with gap-free per-room sequence numbers, and read state.
-- The same tables and column types as migrations/sqlite (one diesel schema serves both).
CREATE TABLE rooms (
    id SERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('public', 'pair')),
    -- The room's latest seq. Writers lock this row (SELECT ... FOR UPDATE) while they assign
    -- seqs, which keeps seqs gap-free across server processes.
    last_seq BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE messages (
    id BIGSERIAL PRIMARY KEY,
    room_id INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    sender_id BIGINT,
    sender_name TEXT NOT NULL,
    sender_role TEXT,
    -- 'u:<id>' for users, 'g:<name>' for guests: the scope of client_id idempotency.
    sender_key TEXT NOT NULL,
    body TEXT NOT NULL,
    client_id TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (room_id, seq)
);

CREATE UNIQUE INDEX messages_client_id ON messages (room_id, sender_key, client_id)
    WHERE client_id IS NOT NULL;

CREATE TABLE read_state (
    room_id INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL,
    last_read_seq BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
