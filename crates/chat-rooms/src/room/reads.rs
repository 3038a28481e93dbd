//! Read receipts in a room: recording one (and telling the room and the reader's inbox), and
//! the members' read positions a pair room's `joined` carries.

use chat_core::{ErrorCode, FrameError, ReadMark, Seq, ServerFrame};
use chat_ws::Context;

use super::{CHAT_READ, RoomSession, Shared};

impl RoomSession {
    /// How far each member of a pair room has read, for `joined` (nothing for a public room,
    /// or when the store does not answer: ticks then show from the next read receipt).
    pub async fn reads(&self, s: &Shared) -> Vec<ReadMark> {
        let Some(pair) = self.room.pair() else {
            return Vec::new();
        };
        let mut reads = Vec::with_capacity(2);
        for user in [pair.low(), pair.high()] {
            match s.store.last_read(&self.room, user).await {
                Ok(0) => {}
                Ok(seq) => reads.push(ReadMark { user, seq }),
                Err(e) => {
                    tracing::warn!(room = %self.room, error = %e, "last_read failed at join");
                    return Vec::new();
                }
            }
        }
        reads
    }

    /// Records a read receipt and tells the room.
    pub async fn read(&mut self, cx: &mut Context, s: &Shared, seq: Seq) -> Result<(), FrameError> {
        let Some(user_id) = s.user.id else {
            return Err(FrameError::new(
                ErrorCode::Forbidden,
                "guests have no read state; log in to send read receipts",
            ));
        };
        s.store
            .mark_read(&self.room, user_id, seq)
            .await
            .map_err(|_| {
                FrameError::new(
                    ErrorCode::StoreUnavailable,
                    "could not store the read receipt",
                )
            })?;
        let frame = ServerFrame::Read {
            room: self.room.clone(),
            user: s.user.clone(),
            seq,
        };
        self.broadcast(cx, CHAT_READ, &frame).await;
        crate::inbox::notify_read(cx.layer(), &self.room, user_id, seq).await;
        Ok(())
    }
}
