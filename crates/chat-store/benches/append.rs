//! Persisted appends on SQLite and on PostgreSQL: one at a time (the latency of one commit)
//! and many at once (group commit: many appends per transaction), into one room and over 100
//! rooms. PostgreSQL runs on a throwaway database of the server at 127.0.0.1:5432
//! (`CHAT_TEST_PG_URL` names another).
//!
//! `cargo bench -p chat-store --bench append`

#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_core::{MessageStore, NewMessage, RoomName, Sender};
use chat_store::testing::{DEFAULT_ADMIN_URL, TestDatabase};
use chat_store::{Store, StoreConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn msg(room: &RoomName, i: u64) -> NewMessage {
    NewMessage {
        attachment: None,
        room: room.clone(),
        sender: Sender::guest("bench"),
        body: format!("message number {i} with a realistic length of text in it"),
        client_id: Some(format!("c-{i}")),
    }
}

fn append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = rt
        .block_on(Store::open(StoreConfig::new(format!(
            "{}/bench.db",
            dir.path().display()
        ))))
        .unwrap();
    run(c, &rt, "sqlite_append", &sqlite);
    drop(sqlite);

    let admin = std::env::var("CHAT_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.into());
    let db = rt.block_on(TestDatabase::create(&admin)).unwrap();
    let postgres = rt
        .block_on(Store::open(StoreConfig::new(db.url())))
        .unwrap();
    run(c, &rt, "postgres_append", &postgres);
    drop(postgres);
    drop(db);
}

fn run(c: &mut Criterion, rt: &tokio::runtime::Runtime, name: &str, store: &Store) {
    let rooms: Vec<RoomName> = (0..100)
        .map(|i| RoomName::parse(&format!("r{i}")).unwrap())
        .collect();
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let next = || counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);

    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));
    group.bench_function("one_at_a_time", |b| {
        b.iter(|| rt.block_on(store.append(msg(&rooms[0], next()))).unwrap())
    });
    for (name, spread) in [
        ("concurrent_one_room", 1usize),
        ("concurrent_100_rooms", 100),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                rt.block_on(async {
                    // 256 writers at once: whoever commits takes what waits with it.
                    let per_task = iters.div_ceil(256);
                    let mut tasks = Vec::new();
                    for t in 0..256u64 {
                        let store = store.clone();
                        let rooms = rooms.clone();
                        let base = next() * 1_000_000_000;
                        tasks.push(tokio::spawn(async move {
                            for i in 0..per_task {
                                let room = &rooms[((t + i) as usize) % spread];
                                store.append(msg(room, base + i)).await.unwrap();
                            }
                        }));
                    }
                    for t in tasks {
                        t.await.unwrap();
                    }
                });
                let elapsed = start.elapsed();
                // Report per append actually made (rounded up to whole tasks).
                let made = iters.div_ceil(256) * 256;
                Duration::from_secs_f64(elapsed.as_secs_f64() * iters as f64 / made as f64)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
