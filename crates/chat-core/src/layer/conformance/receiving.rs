//! The conformance checks about receiving: cancel safety, bursts, and close.

use std::future::Future;

use super::{ARRIVAL, SILENCE, msg, n_of};
use crate::layer::{ChannelLayer, LayerConfig, LayerError};

/// Dropping a pending `receive` (as `select!` does) loses no message.
pub async fn receive_is_cancel_safe<L, F, Fut>(make: F)
where
    L: ChannelLayer + Clone,
    F: Fn(LayerConfig) -> Fut,
    Fut: Future<Output = L>,
{
    let layer = make(LayerConfig::default()).await;
    let a = layer.new_channel().await.expect("new_channel");
    let sender = {
        let layer = layer.clone();
        let a = a.clone();
        tokio::spawn(async move {
            for n in 0..50 {
                layer.send(&a, msg(n)).await.expect("send");
                tokio::task::yield_now().await;
            }
        })
    };
    let mut got = Vec::new();
    while got.len() < 50 {
        tokio::select! {
            r = layer.receive(&a) => got.push(n_of(&r.expect("receive"))),
            () = tokio::task::yield_now() => {}
        }
    }
    sender.await.expect("sender");
    assert_eq!(got, (0..50).collect::<Vec<_>>());
}

/// `receive_many` takes what is waiting, in order and at most `max` at a time; a pending
/// one returns when a message arrives, and dropping it loses nothing.
pub async fn receive_many_takes_bursts_in_order<L, F, Fut>(make: F)
where
    L: ChannelLayer + Clone,
    F: Fn(LayerConfig) -> Fut,
    Fut: Future<Output = L>,
{
    let layer = make(LayerConfig::default()).await;
    let a = layer.new_channel().await.expect("new_channel");
    for n in 0..10 {
        layer.send(&a, msg(n)).await.expect("send");
    }
    let many = |max| {
        let layer = layer.clone();
        let a = a.clone();
        async move {
            match tokio::time::timeout(ARRIVAL, layer.receive_many(&a, max)).await {
                Ok(Ok(batch)) => batch.iter().map(n_of).collect::<Vec<_>>(),
                Ok(Err(e)) => panic!("receive_many failed: {e}"),
                Err(_) => panic!("receive_many returned nothing within {ARRIVAL:?}"),
            }
        }
    };
    assert_eq!(many(4).await, vec![0, 1, 2, 3], "at most max, oldest first");
    assert_eq!(many(0).await, vec![4], "a zero max still takes one");
    assert_eq!(many(100).await, (5..10).collect::<Vec<_>>(), "the rest");
    // A pending receive_many dropped before anything arrives loses nothing.
    let dropped = tokio::time::timeout(SILENCE, layer.receive_many(&a, 8)).await;
    assert!(dropped.is_err(), "nothing was waiting: got {dropped:?}");
    let waiting = tokio::spawn(many(8));
    layer.send(&a, msg(10)).await.expect("send");
    let got = waiting.await.expect("task");
    assert_eq!(
        got.first(),
        Some(&10),
        "a pending receive_many returns on arrival"
    );
}

/// After `close`, calls fail with `Closed` and a pending receive returns.
pub async fn close_ends_receives<L, F, Fut>(make: F)
where
    L: ChannelLayer + Clone,
    F: Fn(LayerConfig) -> Fut,
    Fut: Future<Output = L>,
{
    let layer = make(LayerConfig::default()).await;
    let a = layer.new_channel().await.expect("new_channel");
    let pending = {
        let layer = layer.clone();
        let a = a.clone();
        tokio::spawn(async move { layer.receive(&a).await })
    };
    tokio::task::yield_now().await;
    layer.close().await.expect("close");
    let r = tokio::time::timeout(ARRIVAL, pending)
        .await
        .expect("a pending receive returns on close")
        .expect("task");
    assert!(matches!(r, Err(LayerError::Closed)), "got {r:?}");
    assert!(matches!(
        layer.send(&a, msg(1)).await,
        Err(LayerError::Closed)
    ));
}

/// Several receivers of one channel (a pool of workers on a named channel) share its
/// messages: each message reaches one of them, and none waits while a message it could take
/// sits in the channel.
pub async fn receivers_share_a_channel<L, F, Fut>(make: F)
where
    L: ChannelLayer + Clone,
    F: Fn(LayerConfig) -> Fut,
    Fut: Future<Output = L>,
{
    const RECEIVERS: u64 = 3;
    let layer = make(LayerConfig::default()).await;
    let work = crate::ChannelName::parse("conformance.workers").expect("a valid name");
    let receivers: Vec<_> = (0..RECEIVERS)
        .map(|_| {
            let layer = layer.clone();
            let work = work.clone();
            tokio::spawn(async move { tokio::time::timeout(ARRIVAL, layer.receive(&work)).await })
        })
        .collect();
    // Let the receivers start waiting (whether they do is not what is checked: every order
    // must deliver), then send back to back, so that later messages land behind earlier ones.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    for n in 0..RECEIVERS {
        layer.send(&work, msg(n)).await.expect("send");
    }
    let mut got = Vec::new();
    for r in receivers {
        match r.await.expect("receiver task") {
            Ok(Ok(m)) => got.push(n_of(&m)),
            Ok(Err(e)) => panic!("receive failed: {e}"),
            Err(_) => panic!("a receiver waited {ARRIVAL:?} while messages were queued"),
        }
    }
    got.sort_unstable();
    assert_eq!(got, (0..RECEIVERS).collect::<Vec<_>>());
}

/// A standing receive (`bursts`) gives what `receive_many` would, in order; a `next()`
/// dropped while it waits loses nothing; after `close` it yields `Closed`.
pub async fn bursts_take_what_receive_many_would<L, F, Fut>(make: F)
where
    L: ChannelLayer + Clone,
    F: Fn(LayerConfig) -> Fut,
    Fut: Future<Output = L>,
{
    use futures_util::StreamExt;

    let layer = make(LayerConfig::default()).await;
    let a = layer.new_channel().await.expect("new_channel");
    let mut bursts = std::sync::Arc::new(layer.clone()).bursts(a.clone(), 4);
    for n in 0..6 {
        layer.send(&a, msg(n)).await.expect("send");
    }
    assert_eq!(
        take(&mut bursts).await,
        vec![0, 1, 2, 3],
        "at most max, oldest first"
    );
    assert_eq!(take(&mut bursts).await, vec![4, 5], "the rest");
    // A wait interrupted (as by another branch of a select) loses nothing.
    let interrupted = tokio::time::timeout(SILENCE, bursts.next()).await;
    assert!(
        interrupted.is_err(),
        "nothing was waiting: got {interrupted:?}"
    );
    layer.send(&a, msg(6)).await.expect("send");
    assert_eq!(
        take(&mut bursts).await,
        vec![6],
        "sent after an interrupted wait"
    );
    layer.close().await.expect("close");
    match tokio::time::timeout(ARRIVAL, bursts.next()).await {
        Ok(Some(Err(LayerError::Closed)) | None) => {}
        other => panic!("after close: {other:?}"),
    }
}

/// The next burst's message numbers.
async fn take(bursts: &mut crate::layer::Bursts) -> Vec<u64> {
    use futures_util::StreamExt;

    match tokio::time::timeout(ARRIVAL, bursts.next()).await {
        Ok(Some(Ok(batch))) => batch.iter().map(n_of).collect(),
        Ok(Some(Err(e))) => panic!("bursts failed: {e}"),
        Ok(None) => panic!("bursts ended"),
        Err(_) => panic!("bursts gave nothing within {ARRIVAL:?}"),
    }
}
