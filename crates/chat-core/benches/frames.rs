//! Encoding server frames and parsing client frames: the per-message CPU on the hot path.
//!
//! `cargo bench -p chat-core --bench frames`

#![allow(missing_docs, clippy::unwrap_used)]

use chat_core::{ClientFrame, RoomName, Sender, ServerFrame, StoredMessage, Timestamp};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("frames");
    group.throughput(Throughput::Elements(1));
    let msg = ServerFrame::Message(StoredMessage {
        attachment: None,
        room: RoomName::parse("lobby").unwrap(),
        seq: 123_456,
        sender: Sender::user(3, "Ana", Some("tutor".into())),
        body: "Olá! The appointment is at 3pm, bring the vaccination card.".into(),
        client_id: Some("c-1767225600-17".into()),
        sent_at: Timestamp::from_unix_millis(1_795_003_200_123),
    });
    group.bench_function("encode_message_frame", |b| {
        b.iter(|| std::hint::black_box(&msg).to_json())
    });
    let text = r#"{"type":"message","room":"lobby","body":"Olá! The appointment is at 3pm, bring the vaccination card.","client_id":"c-1767225600-17"}"#;
    group.bench_function("parse_message_frame", |b| {
        b.iter(|| ClientFrame::parse(std::hint::black_box(text)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, frames);
criterion_main!(benches);
