//! Sending in a room: a message (or a burst of them) checked, stored, broadcast, and handed
//! back for the caller to ack in its client's dialect.

use chat_core::{
    Appended, AttachmentInfo, ErrorCode, FrameError, GroupName, LayerMessage, NewMessage,
    ServerFrame, StoreError, StoredMessage,
};
use chat_ws::Context;

use super::{CHAT_MESSAGE, RoomSession, Shared};
use crate::attachment::authorize;
use crate::observe;

impl RoomSession {
    /// Stores a message and broadcasts it; the caller acks it (in its client's dialect). The
    /// caller has checked the rate limit.
    pub async fn message(
        &mut self,
        cx: &mut Context,
        s: &Shared,
        body: String,
        client_id: Option<String>,
        attachment: Option<String>,
    ) -> Result<StoredMessage, FrameError> {
        let received = std::time::Instant::now();
        let new = self
            .prepare(
                s,
                Outgoing {
                    body,
                    client_id,
                    attachment,
                },
            )
            .await?;
        let appended = s.store.append(new).await;
        self.publish(cx, s, appended, received).await
    }

    /// Stores a burst of messages from this client, in order, in one commit where the store
    /// can, and broadcasts each; the caller acks each (in its client's dialect). One answer
    /// per message: a refused message does not refuse the rest. The caller has checked the
    /// rate limit.
    pub async fn messages(
        &mut self,
        cx: &mut Context,
        s: &Shared,
        burst: Vec<Outgoing>,
    ) -> Vec<Result<StoredMessage, FrameError>> {
        let received = std::time::Instant::now();
        let mut refused = Vec::with_capacity(burst.len());
        let mut new = Vec::with_capacity(burst.len());
        for outgoing in burst {
            match self.prepare(s, outgoing).await {
                Ok(msg) => {
                    new.push(msg);
                    refused.push(None);
                }
                Err(e) => refused.push(Some(e)),
            }
        }
        let mut stored = s.store.append_many(new).await.into_iter();
        let mut answers = Vec::with_capacity(refused.len());
        for refusal in refused {
            answers.push(match refusal {
                Some(e) => Err(e),
                None => match stored.next() {
                    Some(appended) => self.publish(cx, s, appended, received).await,
                    None => Err(not_stored()),
                },
            });
        }
        answers
    }

    /// Checks a message against the limits and resolves its attachment.
    async fn prepare(&self, s: &Shared, outgoing: Outgoing) -> Result<NewMessage, FrameError> {
        let Outgoing {
            body,
            client_id,
            attachment,
        } = outgoing;
        s.limits
            .check_attached_message(&body, client_id.as_deref(), attachment.is_some())?;
        let attachment = match attachment {
            Some(id) => Some(self.attachment(s, &id).await?),
            None => None,
        };
        Ok(NewMessage {
            attachment,
            room: self.room.clone(),
            sender: s.user.clone(),
            body,
            client_id,
        })
    }

    /// Broadcasts a message the store took (or says why it did not).
    async fn publish(
        &mut self,
        cx: &mut Context,
        s: &Shared,
        appended: Result<Appended, StoreError>,
        received: std::time::Instant,
    ) -> Result<StoredMessage, FrameError> {
        let Appended {
            message: msg,
            committed,
            ..
        } = appended.map_err(|e| {
            tracing::warn!(room = %self.room, error = %e, "append failed");
            not_stored()
        })?;
        // Sending ends typing, for everyone watching.
        self.stop_typing(cx, s).await;
        match committed {
            // Whoever of the commit's senders gets here first publishes all of it, in order.
            Some(commit) => {
                if commit.claim() {
                    // One batch per run of the same room (a commit may span rooms).
                    for run in commit.messages().chunk_by(|a, b| a.room == b.room) {
                        if run[0].room == self.room {
                            publish_messages(cx, s, &self.group, run).await;
                        } else {
                            publish_messages(cx, s, &run[0].room.group(), run).await;
                        }
                    }
                }
            }
            // A duplicate is a retry, and its first try may have been stored by a node that
            // died before broadcasting it: broadcast it again. Members already holding that
            // seq skip it.
            None => publish_messages(cx, s, &self.group, std::slice::from_ref(&msg)).await,
        }
        crate::inbox::notify_message(cx.layer(), &msg).await;
        observe::send_ack(received.elapsed());
        Ok(msg)
    }

    /// The file `id` names, when this sender may send it here (see [`authorize`]).
    async fn attachment(&self, s: &Shared, id: &str) -> Result<AttachmentInfo, FrameError> {
        authorize(s.attachments.as_deref(), id, &self.room, &s.user).await
    }
}

/// A message as a client asked to send it, before it is checked and stored.
pub struct Outgoing {
    /// The text.
    pub body: String,
    /// The client's id for it, which makes a retry idempotent.
    pub client_id: Option<String>,
    /// The id of a file the sender uploaded to this room.
    pub attachment: Option<String>,
}

/// Broadcasts stored messages of one room to its `group`, in one layer call, each kept first
/// among the process's recent messages: a member that loses one may look for it there as
/// soon as the send is done.
async fn publish_messages(cx: &mut Context, s: &Shared, group: &GroupName, run: &[StoredMessage]) {
    let mut batch = Vec::with_capacity(run.len());
    for m in run {
        match LayerMessage::json(CHAT_MESSAGE, &ServerFrame::Message(m.clone())) {
            Ok(lm) => {
                if let Some(recent) = &s.recent {
                    recent.record(&m.room, m.seq, &lm);
                }
                batch.push(lm);
            }
            Err(e) => tracing::error!(error = %e, "could not encode a message"),
        }
    }
    if let Err(e) = cx.group_send_many(group, batch).await {
        // Stored all the same: receivers recover messages from the store.
        tracing::warn!(group = group.as_str(), error = %e, "group_send failed");
    }
}

fn not_stored() -> FrameError {
    FrameError::new(
        ErrorCode::StoreUnavailable,
        "the message could not be stored; it was not sent, try again",
    )
}
