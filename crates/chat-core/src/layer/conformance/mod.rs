//! The channel-layer conformance suite: Channels' semantics as generic async checks.
//!
//! Every [`ChannelLayer`] in this workspace runs the same suite (the in-memory layer in its unit
//! tests, the Redis layer against a real Redis). An embedder who writes their own layer can
//! run it too:
//!
//! ```ignore
//! chat_core::conformance_tests!(|config| async move { MyLayer::connect(config).await });
//! ```
//!
//! Each check takes a factory that builds a fresh, empty layer from a [`LayerConfig`], and
//! panics with a description of the broken rule.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use serde_json::json;

use super::{ChannelLayer, LayerConfig, LayerError, LayerMessage};
use crate::names::{ChannelName, GroupName};

mod receiving;
mod sending;

pub use receiving::{
    bursts_take_what_receive_many_would, close_ends_receives, receive_is_cancel_safe,
    receive_many_takes_bursts_in_order, receivers_share_a_channel,
};
pub use sending::group_send_many_keeps_order_and_skips_what_does_not_fit;

/// How long a check waits for a message that must arrive before calling it lost.
const ARRIVAL: Duration = Duration::from_secs(5);
/// How long a check waits to be confident that a message that must *not* arrive did not.
const SILENCE: Duration = Duration::from_millis(300);

fn msg(n: u64) -> LayerMessage {
    LayerMessage::new("test.message", json!({ "n": n }))
}

fn n_of(m: &LayerMessage) -> u64 {
    m.decode::<serde_json::Value>()
        .ok()
        .and_then(|v| v["n"].as_u64())
        .unwrap_or(u64::MAX)
}

async fn recv<L: ChannelLayer>(layer: &L, ch: &ChannelName) -> LayerMessage {
    match tokio::time::timeout(ARRIVAL, layer.receive(ch)).await {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => panic!("receive on {ch} failed: {e}"),
        Err(_) => panic!("no message arrived on {ch} within {ARRIVAL:?}"),
    }
}

async fn assert_empty<L: ChannelLayer>(layer: &L, ch: &ChannelName, why: &str) {
    if let Ok(r) = tokio::time::timeout(SILENCE, layer.receive(ch)).await {
        panic!("{why}: {ch} unexpectedly received {r:?}");
    }
}

fn group(name: &str) -> GroupName {
    GroupName::parse(name).expect("test group names are valid")
}

/// A round trip keeps the type tag and the payload, and new channels are unique and valid.
pub async fn send_receive_round_trip<L, F, Fut>(make: F)
where
    L: ChannelLayer,
    F: Fn(LayerConfig) -> Fut,
    Fut: Future<Output = L>,
{
    let layer = make(LayerConfig::default()).await;
    let a = layer.new_channel().await.expect("new_channel");
    let b = layer.new_channel().await.expect("new_channel");
    assert_ne!(a, b, "new_channel must return unique names");
    assert!(ChannelName::parse(a.as_str()).is_ok());
    let sent = LayerMessage::new("chat.message", json!({"message": "oi", "n": 1}));
    layer.send(&a, sent.clone()).await.expect("send");
    let got = recv(&layer, &a).await;
    assert_eq!(got.kind(), "chat.message", "the type tag must survive");
    assert_eq!(
        got.decode::<serde_json::Value>().expect("decode"),
        json!({"message": "oi", "n": 1})
    );
    assert_empty(&layer, &b, "a send reaches only its channel").await;
}

/// Messages on one channel come out in the order they went in.
pub async fn fifo_per_channel<L, F, Fut>(make: F)
where
    L: ChannelLayer,
    F: Fn(LayerConfig) -> Fut,
    Fut: Future<Output = L>,
{
    let layer = make(LayerConfig::default()).await;
    let a = layer.new_channel().await.expect("new_channel");
    for n in 0..50 {
        layer.send(&a, msg(n)).await.expect("send");
    }
    for n in 0..50 {
        assert_eq!(n_of(&recv(&layer, &a).await), n, "FIFO order broken");
    }
}

/// A channel at capacity refuses with `ChannelFull` and keeps what it had.
pub async fn capacity_gives_channel_full<L, F, Fut>(make: F)
where
    L: ChannelLayer,
    F: Fn(LayerConfig) -> Fut,
    Fut: Future<Output = L>,
{
    let layer = make(LayerConfig {
        capacity: 3,
        ..LayerConfig::default()
    })
    .await;
    let a = layer.new_channel().await.expect("new_channel");
    for n in 0..3 {
        layer.send(&a, msg(n)).await.expect("send under capacity");
    }
    match layer.send(&a, msg(3)).await {
        Err(LayerError::ChannelFull(c)) => assert_eq!(c, a),
        other => panic!("expected ChannelFull, got {other:?}"),
    }
    for n in 0..3 {
        assert_eq!(n_of(&recv(&layer, &a).await), n);
    }
    layer
        .send(&a, msg(4))
        .await
        .expect("room again after receiving");
    assert_eq!(n_of(&recv(&layer, &a).await), 4);
}

/// A message not received within `expiry` is dropped, and stops counting towards capacity;
/// the receiver gets a [`LayerMessage::MISSED`] marker where it was.
pub async fn message_expiry<L, F, Fut>(make: F)
where
    L: ChannelLayer,
    F: Fn(LayerConfig) -> Fut,
    Fut: Future<Output = L>,
{
    let layer = make(LayerConfig {
        capacity: 2,
        expiry: Duration::from_secs(1),
        ..LayerConfig::default()
    })
    .await;
    let a = layer.new_channel().await.expect("new_channel");
    layer.send(&a, msg(1)).await.expect("send");
    layer.send(&a, msg(2)).await.expect("send");
    // Expiry is the behaviour under test: there is no signal to wait for but the clock.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    layer
        .send(&a, msg(3))
        .await
        .expect("expired messages must free capacity");
    assert!(
        recv(&layer, &a).await.is_missed(),
        "where messages expired, the receiver is told"
    );
    assert_eq!(
        n_of(&recv(&layer, &a).await),
        3,
        "expired messages delivered"
    );
    assert_empty(&layer, &a, "only the fresh message remains").await;
}

/// Adding puts a channel in the group; discarding takes it out.
pub async fn group_add_and_discard<L, F, Fut>(make: F)
where
    L: ChannelLayer,
    F: Fn(LayerConfig) -> Fut,
    Fut: Future<Output = L>,
{
    let layer = make(LayerConfig::default()).await;
    let g = group("room.add-discard");
    let a = layer.new_channel().await.expect("new_channel");
    let b = layer.new_channel().await.expect("new_channel");
    layer.group_add(&g, &a).await.expect("group_add");
    layer.group_add(&g, &b).await.expect("group_add");
    layer.group_send(&g, msg(1)).await.expect("group_send");
    assert_eq!(n_of(&recv(&layer, &a).await), 1);
    assert_eq!(n_of(&recv(&layer, &b).await), 1);
    layer.group_discard(&g, &a).await.expect("group_discard");
    layer.group_send(&g, msg(2)).await.expect("group_send");
    assert_eq!(n_of(&recv(&layer, &b).await), 2);
    assert_empty(&layer, &a, "a discarded channel gets no group messages").await;
}

/// `group_send` reaches every member exactly once (even one added twice) and no one else.
pub async fn group_send_reaches_each_member_once<L, F, Fut>(make: F)
where
    L: ChannelLayer,
    F: Fn(LayerConfig) -> Fut,
    Fut: Future<Output = L>,
{
    let layer = make(LayerConfig::default()).await;
    let g = group("room.once");
    let other = group("room.other");
    let mut members = Vec::new();
    for _ in 0..20 {
        let c = layer.new_channel().await.expect("new_channel");
        layer.group_add(&g, &c).await.expect("group_add");
        members.push(c);
    }
    layer
        .group_add(&g, &members[0])
        .await
        .expect("re-adding refreshes, never duplicates");
    let outsider = layer.new_channel().await.expect("new_channel");
    layer.group_add(&other, &outsider).await.expect("group_add");
    layer.group_send(&g, msg(7)).await.expect("group_send");
    for c in &members {
        assert_eq!(n_of(&recv(&layer, c).await), 7);
    }
    for c in &members {
        assert_empty(&layer, c, "each member gets the message once").await;
    }
    assert_empty(&layer, &outsider, "non-members get nothing").await;
}

/// Discarding a channel that is not a member (or from a group that does not exist) is a no-op.
pub async fn discard_of_non_member_is_noop<L, F, Fut>(make: F)
where
    L: ChannelLayer,
    F: Fn(LayerConfig) -> Fut,
    Fut: Future<Output = L>,
{
    let layer = make(LayerConfig::default()).await;
    let g = group("room.noop");
    let a = layer.new_channel().await.expect("new_channel");
    let b = layer.new_channel().await.expect("new_channel");
    layer
        .group_discard(&group("room.never-existed"), &a)
        .await
        .expect("discard from an unknown group is fine");
    layer.group_add(&g, &a).await.expect("group_add");
    layer
        .group_discard(&g, &b)
        .await
        .expect("discard of a non-member is fine");
    layer.group_send(&g, msg(1)).await.expect("group_send");
    assert_eq!(n_of(&recv(&layer, &a).await), 1, "members are untouched");
    layer
        .group_send(&group("room.nobody"), msg(2))
        .await
        .expect("a send to an empty group is fine");
}

/// `flush` drops every queued message and every group.
pub async fn flush_empties_everything<L, F, Fut>(make: F)
where
    L: ChannelLayer,
    F: Fn(LayerConfig) -> Fut,
    Fut: Future<Output = L>,
{
    let layer = make(LayerConfig::default()).await;
    let g = group("room.flush");
    let a = layer.new_channel().await.expect("new_channel");
    layer.group_add(&g, &a).await.expect("group_add");
    layer.send(&a, msg(1)).await.expect("send");
    layer.flush().await.expect("flush");
    assert_empty(&layer, &a, "flush drops queued messages").await;
    layer.group_send(&g, msg(2)).await.expect("group_send");
    assert_empty(&layer, &a, "flush drops groups").await;
    layer
        .send(&a, msg(3))
        .await
        .expect("the layer works after flush");
    assert_eq!(n_of(&recv(&layer, &a).await), 3);
}

/// A group membership older than `group_expiry` no longer receives.
pub async fn group_membership_expiry<L, F, Fut>(make: F)
where
    L: ChannelLayer,
    F: Fn(LayerConfig) -> Fut,
    Fut: Future<Output = L>,
{
    let layer = make(LayerConfig {
        group_expiry: Duration::from_secs(1),
        ..LayerConfig::default()
    })
    .await;
    let g = group("room.expiry");
    let old = layer.new_channel().await.expect("new_channel");
    let fresh = layer.new_channel().await.expect("new_channel");
    layer.group_add(&g, &old).await.expect("group_add");
    // Expiry is the behaviour under test: there is no signal to wait for but the clock.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    layer.group_add(&g, &fresh).await.expect("group_add");
    layer.group_send(&g, msg(1)).await.expect("group_send");
    assert_eq!(n_of(&recv(&layer, &fresh).await), 1);
    assert_empty(&layer, &old, "an expired membership receives nothing").await;
}

/// Two new members of `g`: the first already holds message 0, the second nothing.
async fn busy_and_idle_members<L: ChannelLayer>(
    layer: &L,
    g: &GroupName,
) -> (ChannelName, ChannelName) {
    let busy = layer.new_channel().await.expect("new_channel");
    let idle = layer.new_channel().await.expect("new_channel");
    layer.group_add(g, &busy).await.expect("group_add");
    layer.group_add(g, &idle).await.expect("group_add");
    layer.send(&busy, msg(0)).await.expect("queue message 0");
    (busy, idle)
}

/// A full member misses a group message; the others still get it and the send succeeds.
pub async fn group_send_skips_full_members<L, F, Fut>(make: F)
where
    L: ChannelLayer,
    F: Fn(LayerConfig) -> Fut,
    Fut: Future<Output = L>,
{
    let layer = make(LayerConfig {
        capacity: 1,
        ..LayerConfig::default()
    })
    .await;
    let g = group("room.full");
    let (slow, fast) = busy_and_idle_members(&layer, &g).await;
    layer
        .group_send(&g, msg(1))
        .await
        .expect("group_send succeeds even when a member is full");
    assert_eq!(n_of(&recv(&layer, &fast).await), 1);
    assert_eq!(n_of(&recv(&layer, &slow).await), 0);
    assert!(
        recv(&layer, &slow).await.is_missed(),
        "the full member is told, where the message would have been"
    );
    assert_empty(&layer, &slow, "the full member missed the message").await;
    layer.group_send(&g, msg(2)).await.expect("group_send");
    assert_eq!(
        n_of(&recv(&layer, &slow).await),
        2,
        "one marker per loss, then messages again"
    );
}

/// Names are validated before they reach a layer (the types make invalid names
/// unrepresentable); the layer's own names obey the rules.
pub async fn invalid_names_are_rejected<L, F, Fut>(make: F)
where
    L: ChannelLayer,
    F: Fn(LayerConfig) -> Fut,
    Fut: Future<Output = L>,
{
    for bad in ["", "has space", "ünï", "a/b", &"x".repeat(100)] {
        assert!(
            GroupName::parse(bad).is_err(),
            "group name {bad:?} accepted"
        );
        assert!(
            ChannelName::parse(bad).is_err(),
            "channel name {bad:?} accepted"
        );
    }
    let layer = make(LayerConfig::default()).await;
    for _ in 0..10 {
        let c = layer.new_channel().await.expect("new_channel");
        assert!(
            ChannelName::parse(c.as_str()).is_ok(),
            "layer made an invalid name {c}"
        );
    }
}

/// Many concurrent senders to one channel: nothing lost, each sender's order kept.
pub async fn many_concurrent_senders<L, F, Fut>(make: F)
where
    L: ChannelLayer + Clone,
    F: Fn(LayerConfig) -> Fut,
    Fut: Future<Output = L>,
{
    const SENDERS: u64 = 8;
    const EACH: u64 = 200;
    let layer = make(LayerConfig {
        capacity: (SENDERS * EACH) as usize,
        ..LayerConfig::default()
    })
    .await;
    let target = layer.new_channel().await.expect("new_channel");
    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        let layer = layer.clone();
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                layer
                    .send(&target, msg(s * 1_000_000 + i))
                    .await
                    .expect("send");
            }
        }));
    }
    for t in tasks {
        t.await.expect("sender task");
    }
    let mut last: HashMap<u64, u64> = HashMap::new();
    for _ in 0..SENDERS * EACH {
        let n = n_of(&recv(&layer, &target).await);
        let (s, i) = (n / 1_000_000, n % 1_000_000);
        if let Some(prev) = last.insert(s, i) {
            assert!(i > prev, "sender {s}: {i} arrived after {prev}");
        }
    }
    assert!(
        last.values().all(|&i| i == EACH - 1),
        "messages lost: {last:?}"
    );
    assert_empty(&layer, &target, "no extra messages").await;
}

/// Generates one `#[tokio::test]` per conformance check for a layer factory
/// `|config: LayerConfig| async move { ... }`. The layer type must be `Clone`.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            send_receive_round_trip, fifo_per_channel, capacity_gives_channel_full,
            message_expiry, group_add_and_discard, group_send_reaches_each_member_once,
            discard_of_non_member_is_noop, flush_empties_everything, group_membership_expiry,
            group_send_skips_full_members, invalid_names_are_rejected, many_concurrent_senders,
            receive_is_cancel_safe, receive_many_takes_bursts_in_order, close_ends_receives,
            receivers_share_a_channel, bursts_take_what_receive_many_would,
            group_send_many_keeps_order_and_skips_what_does_not_fit);
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        mod conformance {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::layer::conformance::$name($make).await;
                }
            )*
        }
    };
}
