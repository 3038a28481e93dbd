//! Files in messages: what the room session checks before a message may carry one. The
//! files themselves live in the server's attachment store; a room only needs to know that
//! the file exists, belongs to the room and was uploaded by the sender.

use std::future::Future;
use std::pin::Pin;

use chat_core::{AttachmentInfo, ErrorCode, FrameError, RoomName, Sender};
use serde::{Deserialize, Serialize};

/// An uploaded file: what the protocol shows, the room it belongs to (whose members may read
/// it) and who uploaded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// What the protocol shows.
    #[serde(flatten)]
    pub info: AttachmentInfo,
    /// The room it was sent to.
    pub room: RoomName,
    /// Who uploaded it: their [`Sender::idempotency_key`](chat_core::Sender::idempotency_key)
    /// (`u:<user id>`, `g:<guest id>`).
    pub uploader: String,
}

/// Why an attachment store failed.
#[derive(Debug, thiserror::Error)]
pub enum AttachmentError {
    /// The file system failed (full disk, permissions).
    #[error("attachment storage: {0}")]
    Io(#[from] std::io::Error),
    /// A stored record could not be read back.
    #[error("an attachment record is damaged: {0}")]
    Corrupt(#[from] serde_json::Error),
    /// Another backend failed.
    #[error("attachment storage: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// What an attachment store call returns.
pub type AttachmentFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, AttachmentError>> + Send + 'a>>;

/// Finds an uploaded file's record (not its bytes): what a room session asks before it
/// stores a message that refers to one.
pub trait AttachmentLookup: Send + Sync + 'static {
    /// The attachment `id` names; `None` for an id it does not hold.
    fn find<'a>(&'a self, id: &'a str) -> AttachmentFuture<'a, Option<Attachment>>;
}

/// Whether `id` is an attachment id (32 lowercase hex digits): checked before any store sees
/// it, so no id can name a path.
pub fn is_attachment_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The file `id` names, when `sender` may send it in `room`: it exists, it was uploaded to
/// this room, and by this sender (an id seen in a room's history is not a licence to send
/// someone else's file, or to carry a file into another room).
pub async fn authorize(
    lookup: Option<&dyn AttachmentLookup>,
    id: &str,
    room: &RoomName,
    sender: &Sender,
) -> Result<AttachmentInfo, FrameError> {
    let unknown = || FrameError::new(ErrorCode::NotFound, format!("no attachment {id:?}"));
    let Some(lookup) = lookup else {
        return Err(FrameError::new(
            ErrorCode::NotFound,
            "this server takes no attachments",
        ));
    };
    if !is_attachment_id(id) {
        return Err(unknown());
    }
    let found = lookup.find(id).await.map_err(|e| {
        tracing::warn!(%room, error = %e, "attachment lookup failed");
        FrameError::new(
            ErrorCode::StoreUnavailable,
            "the attachment could not be checked; try again",
        )
    })?;
    let a = found.ok_or_else(unknown)?;
    if a.room != *room || a.uploader != sender.idempotency_key() {
        return Err(FrameError::new(
            ErrorCode::Forbidden,
            "attach files you uploaded to this room",
        ));
    }
    Ok(a.info)
}
