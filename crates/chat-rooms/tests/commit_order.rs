//! Messages that several senders' appends stored in one commit reach the room in seq order
//! and at once: whichever sender's task runs first publishes the whole commit, so the room
//! does not wait for the others' tasks (nor, when one never runs again, read the gap from
//! the store).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use chat_core::{
    Appended, Committed, HistoryPage, HistoryQuery, InMemoryChannelLayer, Limits, MemoryStore,
    MessageStore, NewMessage, RoomName, Sender, Seq, SharedLayer, StoreError, UserId,
};
use chat_rooms::ChatConsumer;
use chat_ws::Communicator;
use serde_json::json;
use std::sync::Mutex;
use tokio::sync::{Notify, oneshot};

/// A store that commits the first two appends together, as a paced group commit does, and
/// answers only the second: the first sender's task has not run since.
#[derive(Default)]
struct CommitsInPairs {
    inner: MemoryStore,
    /// The first append, waiting for its partner; its answer is never sent.
    first: Mutex<Option<(Appended, oneshot::Sender<Appended>)>>,
    unanswered: Mutex<Vec<oneshot::Sender<Appended>>>,
    first_in: Notify,
    history_reads: AtomicUsize,
}

#[async_trait]
impl MessageStore for CommitsInPairs {
    async fn append(&self, msg: NewMessage) -> Result<Appended, StoreError> {
        let mut appended = self.inner.append(msg).await?;
        let rx = {
            let mut first = self.first.lock().unwrap();
            match first.take() {
                None => {
                    let (tx, rx) = oneshot::channel();
                    *first = Some((appended.clone(), tx));
                    rx
                }
                Some((earlier, tx)) => {
                    let commit = Committed::new(vec![earlier.message, appended.message.clone()]);
                    appended.committed = Some(Arc::new(commit));
                    self.unanswered.lock().unwrap().push(tx);
                    return Ok(appended);
                }
            }
        };
        self.first_in.notify_one();
        rx.await
            .map_err(|_| StoreError::Unavailable("never answered".into()))
    }

    async fn history(
        &self,
        room: &RoomName,
        query: HistoryQuery,
    ) -> Result<HistoryPage, StoreError> {
        self.history_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.history(room, query).await
    }

    async fn last_seq(&self, room: &RoomName) -> Result<Seq, StoreError> {
        self.inner.last_seq(room).await
    }

    async fn mark_read(&self, room: &RoomName, user: UserId, seq: Seq) -> Result<(), StoreError> {
        self.inner.mark_read(room, user, seq).await
    }

    async fn last_read(&self, room: &RoomName, user: UserId) -> Result<Seq, StoreError> {
        self.inner.last_read(room, user).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

async fn join(
    layer: &SharedLayer,
    store: &Arc<CommitsInPairs>,
    name: &str,
) -> Communicator<ChatConsumer> {
    let consumer = ChatConsumer::new(
        RoomName::parse("lobby").unwrap(),
        Sender::guest(name),
        store.clone(),
        Limits::default(),
    );
    let mut c = Communicator::with_shared_layer(consumer, layer.clone());
    assert!(c.connect().await.accepted());
    c
}

#[tokio::test]
async fn the_first_sender_of_a_commit_to_run_publishes_all_of_it_in_order() {
    let layer: SharedLayer = Arc::new(InMemoryChannelLayer::default());
    let store = Arc::new(CommitsInPairs::default());
    let ana = join(&layer, &store, "ana").await;
    let bruno = join(&layer, &store, "bruno").await;
    let mut carla = join(&layer, &store, "carla").await;

    ana.send_json(json!({"type": "message", "body": "from ana"}))
        .await;
    store.first_in.notified().await;
    bruno
        .send_json(json!({"type": "message", "body": "from bruno"}))
        .await;

    let mut seen = Vec::new();
    while seen.len() < 2 {
        let v = carla.receive_json().await;
        if v["type"] == "message" {
            seen.push(format!("{} {}", v["seq"], v["body"].as_str().unwrap()));
        }
    }
    assert_eq!(seen, ["1 from ana", "2 from bruno"]);
    assert_eq!(
        store.history_reads.load(Ordering::SeqCst),
        0,
        "the room heard the commit live, without reading a gap from the store"
    );
    drop(ana);
}
