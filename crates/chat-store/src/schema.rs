//! The diesel schema, shared by both backends (kept in step with `migrations/sqlite` and
//! `migrations/postgres`, which declare the same tables and column types).

#![allow(missing_docs)]

diesel::table! {
    rooms (id) {
        id -> Integer,
        name -> Text,
        kind -> Text,
        last_seq -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    messages (id) {
        id -> BigInt,
        room_id -> Integer,
        seq -> BigInt,
        sender_id -> Nullable<BigInt>,
        sender_name -> Text,
        sender_role -> Nullable<Text>,
        sender_key -> Text,
        body -> Text,
        client_id -> Nullable<Text>,
        created_at -> BigInt,
        attachment -> Nullable<Text>,
    }
}

diesel::table! {
    read_state (room_id, user_id) {
        room_id -> Integer,
        user_id -> BigInt,
        last_read_seq -> BigInt,
    }
}

diesel::joinable!(messages -> rooms (room_id));
diesel::joinable!(read_state -> rooms (room_id));
diesel::allow_tables_to_appear_in_same_query!(rooms, messages, read_state);

diesel::table! {
    users (id) {
        id -> Integer,
        username -> Text,
        display_name -> Text,
        role -> Text,
        password_hash -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    sessions (id_hash) {
        id_hash -> Text,
        user_id -> Integer,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::joinable!(sessions -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(users, sessions);

diesel::table! {
    files (id) {
        id -> Text,
        room -> Text,
        uploader -> Text,
        name -> Text,
        content_type -> Text,
        size -> BigInt,
        data -> Binary,
        created_at -> BigInt,
    }
}
