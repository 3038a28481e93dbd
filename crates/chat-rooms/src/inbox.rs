//! A logged-in user's inbox: what a list of conversations needs while a page is open, pushed
//! instead of polled. One socket per page, whatever room (if any) the page shows.
//!
//! - **Unread.** A message in one of the user's pair rooms from the other member sends
//!   `{"type": "unread", "room", "seq"}` to the user's inbox; a read receipt the user sends
//!   (from any tab) sends `{"type": "read", "room", "seq"}`. The counts themselves stay in the
//!   store (`GET /api/contacts`): the events say when to read them again, so a client never
//!   drifts from the server's numbers.
//! - **Online.** Each inbox socket registers the user in the presence set
//!   [`RoomName::everyone`]; the user's first connection announces `{"type": "online",
//!   "user"}`, the last one `{"type": "offline", "user"}`, to every inbox socket that may see
//!   the user. On open, the socket is told who is online: `{"type": "inbox", "online": [user,
//!   …]}`. A layer that lost messages for the socket sends `{"type": "resync"}`: read
//!   everything again.
//!
//! The notifications ride the channel layer (groups `inbox.user.<id>` and `inbox.online`), so
//! they cross nodes as room traffic does. A notification that cannot be sent is logged and
//! dropped: the message itself is stored and reaches its room all the same.

use std::sync::Arc;

use chat_core::{
    GroupName, LayerMessage, RoomName, Sender, Seq, SharedLayer, SharedPresence, StoredMessage,
    UserId,
};
use chat_ws::{Consumer, ConsumerError, Context};
use serde_json::json;

/// Layer message type of an inbox notification (unread, read): forwarded as it is.
pub const INBOX_EVENT: &str = "chat.inbox";
/// Layer message type of a user coming online or going offline (payload: `{"type": "online"
/// | "offline", "user"}`); each socket forwards only users it may see.
pub const INBOX_PRESENCE: &str = "chat.inbox.presence";

/// Who an inbox may see online: the server's pair policy (one sees whom one may talk with).
pub type Visibility = Arc<dyn Fn(&Sender) -> bool + Send + Sync>;

/// The group of one user's inbox sockets.
pub fn user_group(user: UserId) -> GroupName {
    // "inbox.user." and digits: always a valid group name.
    GroupName::parse(&format!("inbox.user.{user}")).expect("a valid group name")
}

/// The group of every inbox socket, which hears users come and go.
pub fn online_group() -> GroupName {
    GroupName::parse("inbox.online").expect("a valid group name")
}

async fn send(layer: &SharedLayer, group: &GroupName, kind: &'static str, v: serde_json::Value) {
    if let Err(e) = layer.group_send(group, LayerMessage::new(kind, v)).await {
        tracing::warn!(%group, error = %e, "inbox: could not notify");
    }
}

/// Tells the other member of a pair room that `msg` is waiting for them (nothing for a public
/// room: its unread counts are read when its page opens).
pub async fn notify_message(layer: &SharedLayer, msg: &StoredMessage) {
    let (Some(pair), Some(sender)) = (msg.room.pair(), msg.sender.id) else {
        return;
    };
    let Some(other) = pair.other(sender) else {
        return;
    };
    let event = json!({"type": "unread", "room": msg.room.as_str(), "seq": msg.seq});
    send(layer, &user_group(other), INBOX_EVENT, event).await;
}

/// Tells the reader's own inbox sockets (their other tabs) that `room` was read up to `seq`.
pub async fn notify_read(layer: &SharedLayer, room: &RoomName, reader: UserId, seq: Seq) {
    let event = json!({"type": "read", "room": room.as_str(), "seq": seq});
    send(layer, &user_group(reader), INBOX_EVENT, event).await;
}

/// The inbox socket of a logged-in user (`/ws/inbox/` on the server).
pub struct InboxConsumer {
    user: Sender,
    presence: Option<SharedPresence>,
    visible: Visibility,
    /// The presence registration, once made.
    conn: Option<String>,
}

impl InboxConsumer {
    /// The inbox of `user`, who must be a user (guests have no inbox: `connect` refuses them
    /// with 403). Without `presence`, the socket says nobody is online and carries unread
    /// events only.
    pub fn new(user: Sender, presence: Option<SharedPresence>, visible: Visibility) -> Self {
        Self {
            user,
            presence,
            visible,
            conn: None,
        }
    }

    fn shows(&self, user: &Sender) -> bool {
        user.id.is_some() && user.id != self.user.id && (self.visible)(user)
    }

    async fn announce(&self, cx: &Context, event: &'static str) {
        let v = json!({"type": event, "user": self.user});
        send(cx.layer(), &online_group(), INBOX_PRESENCE, v).await;
    }
}

impl Consumer for InboxConsumer {
    async fn connect(&mut self, cx: &mut Context) -> Result<(), ConsumerError> {
        let Some(id) = self.user.id else {
            cx.reject(403, "guests have no inbox; log in first");
            return Ok(());
        };
        cx.group_add(user_group(id)).await?;
        cx.group_add(online_group()).await?;
        cx.accept();
        Ok(())
    }

    async fn opened(&mut self, cx: &mut Context) -> Result<(), ConsumerError> {
        let mut online = Vec::new();
        if let Some(presence) = self.presence.clone() {
            let everyone = RoomName::everyone();
            let conn = cx.channel_name().to_string();
            match presence.join(&everyone, &self.user, &conn).await {
                Ok(first) => {
                    self.conn = Some(conn);
                    if first {
                        self.announce(cx, "online").await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "inbox: presence join failed"),
            }
            match presence.online(&everyone).await {
                Ok(users) => online = users.into_iter().filter(|u| self.shows(u)).collect(),
                Err(e) => tracing::warn!(error = %e, "inbox: presence online failed"),
            }
        }
        cx.send_json(&json!({"type": "inbox", "online": online}));
        Ok(())
    }

    async fn handle(&mut self, cx: &mut Context, msg: LayerMessage) -> Result<(), ConsumerError> {
        if msg.is_missed() {
            cx.send_json(&json!({"type": "resync"}));
            return Ok(());
        }
        if msg.kind() == INBOX_PRESENCE {
            #[derive(serde::Deserialize)]
            struct Change {
                user: Sender,
            }
            match msg.decode::<Change>() {
                Ok(change) if self.shows(&change.user) => cx.forward(msg),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "inbox: undecodable presence change"),
            }
            return Ok(());
        }
        cx.forward(msg);
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "inbox"
    }

    async fn disconnect(
        &mut self,
        cx: &mut Context,
        _code: Option<u16>,
    ) -> Result<(), ConsumerError> {
        if let (Some(presence), Some(conn)) = (self.presence.clone(), self.conn.take()) {
            match presence
                .leave(&RoomName::everyone(), &self.user, &conn)
                .await
            {
                Ok(true) => self.announce(cx, "offline").await,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "inbox: presence leave failed"),
            }
        }
        Ok(())
    }
}

/// Announces `user` offline to every inbox, for a user a dead node could not announce (the
/// presence sweeper's part for [`RoomName::everyone`]).
pub(crate) async fn announce_gone(layer: &SharedLayer, user: &Sender) {
    let v = json!({"type": "offline", "user": user});
    send(layer, &online_group(), INBOX_PRESENCE, v).await;
}
