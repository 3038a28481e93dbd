DROP TABLE read_state;
DROP INDEX messages_client_id;
DROP TABLE messages;
DROP TABLE rooms;
