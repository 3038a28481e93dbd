//! Attachments: files sent into a room (a photo of a pet for the vet), uploaded over HTTP
//! (`POST /api/rooms/{room}/attachments`) and read back by the room's members only
//! (`GET /api/attachments/{id}`).
//!
//! A file's type is what its bytes say (sniffed), never what the client claims: a page that
//! calls itself `image/png` but is HTML is refused, so nothing a member uploads can run as a
//! page on our origin. Files live behind [`AttachmentStore`]: the data directory by default
//! ([`DirAttachments`]), and any store an embedder plugs in (object storage, a database).

mod dir;
mod http;
mod sniff;

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use chat_core::RoomName;
use serde::{Deserialize, Serialize};

pub use self::dir::DirAttachments;
pub(crate) use self::http::{download, upload};
pub use self::sniff::{ALLOWED_TYPES, sniff};

/// The default largest attachment: 10 MiB.
pub const DEFAULT_MAX_ATTACHMENT_BYTES: usize = 10 * 1024 * 1024;

/// What the protocol shows of an attachment (in the upload's answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentInfo {
    /// Its id: 32 lowercase hex digits.
    pub id: String,
    /// The file name the uploader gave (shown, never used as a path).
    pub name: String,
    /// The sniffed type (`image/png`, `application/pdf`, …).
    pub content_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// An attachment as stored: what the protocol shows, the room it belongs to (whose members
/// may read it) and who uploaded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// What the protocol shows.
    #[serde(flatten)]
    pub info: AttachmentInfo,
    /// The room it was sent to.
    pub room: RoomName,
    /// Who uploaded it: `u:<user id>` or `g:<guest id>`.
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

/// What an [`AttachmentStore`] call returns.
pub type AttachmentFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, AttachmentError>> + Send + 'a>>;

/// Where attachments are kept. Each call is all-or-nothing: a failed `put` leaves nothing
/// behind, and `get` never returns a file whose record is missing or the other way round.
pub trait AttachmentStore: Send + Sync + 'static {
    /// Stores `data` under `attachment.info.id`.
    fn put<'a>(&'a self, attachment: &'a Attachment, data: Bytes) -> AttachmentFuture<'a, ()>;

    /// The attachment and its bytes; `None` for an id it does not hold.
    fn get<'a>(&'a self, id: &'a str) -> AttachmentFuture<'a, Option<(Attachment, Bytes)>>;
}

/// Whether `id` is an attachment id (32 lowercase hex digits): checked before any store sees
/// it, so no id can name a path.
pub fn is_attachment_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A new random attachment id.
pub(crate) fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}
