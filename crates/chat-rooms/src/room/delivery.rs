//! In-order, exactly-once delivery of a room's messages to one socket: live messages, the
//! wait for one a later seq overtook, and catch-ups (from the node's recent messages, then
//! the store) when the layer lost some. The guarantee is stated in the parent module.

use chat_core::{HistoryQuery, LayerMessage, Seq};
use chat_ws::Context;
use tokio::time::Instant;

use super::{MAX_AHEAD, RoomSession, Shared};
use crate::dialect::Render;
use crate::observe;

/// Sends a live message as the socket's client reads it.
fn emit_live(cx: &mut Context, render: Render, msg: LayerMessage) {
    observe::delivered();
    observe::delivery_delay(&msg);
    match render.live(&msg) {
        None => cx.forward(msg),
        Some(Ok(text)) => cx.send_text(text),
        Some(Err(e)) => tracing::error!(error = %e, "could not render a live message"),
    }
}

/// How much of a catch-up [`RoomSession::fill_from_recent`] sent.
enum Recent {
    /// All of it.
    Complete,
    /// Every seq up to this one; the rest is for the store.
    Upto(Seq),
    /// None: the store sends all of it.
    Nothing,
}

/// [`emit_live`], waiting for room in the outbound queue (a catch-up, paced to the client).
async fn emit_live_wait(cx: &mut Context, render: Render, msg: LayerMessage) {
    observe::delivered();
    let text = match render.live(&msg) {
        None => Ok(chat_ws::Utf8Bytes::from(msg.into_text())),
        Some(text) => text,
    };
    match text {
        Ok(text) => cx.send_text_wait(text).await,
        Err(e) => tracing::error!(error = %e, "could not render a caught-up message"),
    }
}

impl RoomSession {
    /// Reads and sends every stored message after the delivered seq and before `before`.
    /// `reason` says why, for [`chat_core::metrics::CATCH_UP_READS`].
    pub(super) async fn fill_gap(
        &mut self,
        cx: &mut Context,
        s: &Shared,
        before: Option<Seq>,
        wait: bool,
        reason: &'static str,
    ) -> bool {
        let Some(mut after) = self.delivered else {
            return true;
        };
        if reason != "replay" {
            match self.fill_from_recent(cx, s, after, before, wait).await {
                Recent::Complete => {
                    observe::catch_up_recent(reason);
                    return true;
                }
                Recent::Upto(seq) => {
                    observe::catch_up_recent(reason);
                    after = seq;
                }
                Recent::Nothing => {}
            }
        }
        loop {
            let query = HistoryQuery {
                after: Some(after),
                before,
                limit: HistoryQuery::MAX_LIMIT,
            };
            observe::catch_up_read(reason);
            let page = match s.store.history(&self.room, query).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(room = %self.room, error = %e, "could not read a gap from the store");
                    return false;
                }
            };
            for m in &page.messages {
                observe::delivered();
                if wait {
                    cx.send_text_wait(s.render.message(m)).await;
                } else {
                    cx.send_text(s.render.message(m));
                }
                after = m.seq;
            }
            self.delivered = Some(after);
            if !page.has_more || page.messages.is_empty() {
                return true;
            }
        }
    }

    /// A live `chat.message` with its seq: delivered in order, exactly once.
    pub async fn deliver(&mut self, cx: &mut Context, s: &Shared, msg: LayerMessage, seq: Seq) {
        let Some(delivered) = self.delivered else {
            // The store could not say where the room was at join: start from here.
            emit_live(cx, s.render, msg);
            self.delivered = Some(seq);
            return;
        };
        if seq <= delivered {
            return;
        }
        if seq == delivered + 1 {
            emit_live(cx, s.render, msg);
            self.delivered = Some(seq);
            self.release_ahead(cx, s.render);
            return;
        }
        self.ahead.entry(seq).or_insert(msg);
        self.ahead_since.get_or_insert_with(Instant::now);
        if self.ahead.len() > MAX_AHEAD {
            self.resolve_gaps(cx, s).await;
        }
    }

    /// The layer lost live messages for this socket (its mailbox was full): sends everything
    /// stored after the delivered seq, then what was held. Paced to the client, like a replay.
    pub async fn catch_up(&mut self, cx: &mut Context, s: &Shared) {
        if !self.fill_gap(cx, s, None, true, "missed").await {
            tracing::warn!(room = %self.room, "could not read the messages this socket missed");
        }
        self.release_ahead(cx, s.render);
    }

    /// Sends what [`RoomSession::fill_gap`] would read from the messages this process
    /// published lately, as far as they hold every seq (see [`RecentMessages`]). The end of a
    /// gap is known; a catch-up's end is the room's last seq, one indexed read. Under load a
    /// commit's publisher can be a little behind its commit, so the newest seqs are often
    /// not here yet: the store is read only for those.
    async fn fill_from_recent(
        &mut self,
        cx: &mut Context,
        s: &Shared,
        after: Seq,
        before: Option<Seq>,
        wait: bool,
    ) -> Recent {
        let Some(recent) = &s.recent else {
            return Recent::Nothing;
        };
        let through = match before {
            Some(before) => before.saturating_sub(1),
            None => match s.store.last_seq(&self.room).await {
                Ok(seq) => seq,
                Err(_) => return Recent::Nothing,
            },
        };
        if through <= after {
            return Recent::Complete;
        }
        let run = recent.run(&self.room, after, through);
        if run.is_empty() {
            return Recent::Nothing;
        }
        let upto = after + run.len() as Seq;
        for msg in run {
            if wait {
                emit_live_wait(cx, s.render, msg).await;
            } else {
                emit_live(cx, s.render, msg);
            }
        }
        self.delivered = Some(upto);
        if upto >= through {
            Recent::Complete
        } else {
            Recent::Upto(upto)
        }
    }

    /// Sends the held messages that now follow the delivered seq without a gap.
    fn release_ahead(&mut self, cx: &mut Context, render: Render) {
        while let Some(entry) = self.ahead.first_entry() {
            let seq = *entry.key();
            let next = self.delivered.map_or(seq, |d| d + 1);
            if seq < next {
                entry.remove();
            } else if seq == next {
                emit_live(cx, render, entry.remove());
                self.delivered = Some(seq);
            } else {
                break;
            }
        }
        if self.ahead.is_empty() {
            self.ahead_since = None;
        }
    }

    /// The wait is over: reads every gap below the held messages from the store and sends
    /// everything in order. When the store is down the gaps stay: what is held goes out
    /// anyway, and the client can resume with `since` later.
    pub(super) async fn resolve_gaps(&mut self, cx: &mut Context, s: &Shared) {
        while let Some(first) = self.ahead.keys().next().copied() {
            if !self.fill_gap(cx, s, Some(first), false, "gap").await {
                tracing::debug!(room = %self.room, "delivering past a gap");
            }
            // Past whatever the store could not give, so every turn makes progress.
            if self.delivered.is_none_or(|d| d + 1 < first) {
                self.delivered = Some(first - 1);
            }
            self.release_ahead(cx, s.render);
        }
        self.ahead_since = None;
    }
}
