//! `group_send` to 10,000 members of one group on the in-memory layer: the fan-out cost per
//! message (one shared payload, no lock held across the loop).
//!
//! `cargo bench -p chat-core --bench layer`

#![allow(missing_docs, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use chat_core::{
    ChannelLayer, ChannelName, GroupName, InMemoryChannelLayer, LayerConfig, LayerMessage,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn fan_out(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("in_memory_layer");
    for members in [1_000u64, 10_000] {
        let layer = InMemoryChannelLayer::new(LayerConfig {
            capacity: 1_000,
            ..LayerConfig::default()
        });
        let g = GroupName::parse("room.bench").unwrap();
        let channels: Vec<ChannelName> = (0..members)
            .map(|i| ChannelName::parse(&format!("bench.{i}")).unwrap())
            .collect();
        let join_all = || {
            rt.block_on(async {
                for ch in &channels {
                    layer.group_add(&g, ch).await.unwrap();
                }
            })
        };
        join_all();
        let msg = LayerMessage::new(
            "chat.message",
            serde_json::json!({"type": "message", "room": "bench", "seq": 1, "body": "x".repeat(100)}),
        );
        group.throughput(Throughput::Elements(members));
        group.bench_function(format!("group_send_to_{members}_members"), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    // Mailboxes hold 1,000: send in batches and empty them, untimed.
                    let batch = left.min(500);
                    let start = Instant::now();
                    rt.block_on(async {
                        for _ in 0..batch {
                            layer.group_send(&g, msg.clone()).await.unwrap();
                        }
                    });
                    spent += start.elapsed();
                    left -= batch;
                    // Empty the mailboxes (flush also drops the group: join again).
                    rt.block_on(layer.flush()).unwrap();
                    join_all();
                }
                spent
            });
        });
    }
    group.finish();
}

criterion_group!(benches, fan_out);
criterion_main!(benches);
