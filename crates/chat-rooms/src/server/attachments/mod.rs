//! Attachments: files sent into a room (a photo of a pet for the vet), uploaded over HTTP
//! (`POST /api/rooms/{room}/attachments`) and read back by the room's members only
//! (`GET /api/attachments/{id}`).
//!
//! A file's type is what its bytes say (sniffed), never what the client claims: a page that
//! calls itself `image/png` but is HTML is refused, so nothing a member uploads can run as a
//! page on our origin. Files live behind [`AttachmentStore`]: the data directory by default
//! ([`DirAttachments`]), the database shared by several nodes ([`DbAttachments`]), or any
//! store an embedder plugs in (object storage).

mod db;
mod dir;
mod http;
mod sniff;

use bytes::Bytes;
pub use chat_core::AttachmentInfo;

pub use crate::attachment::{
    Attachment, AttachmentError, AttachmentFuture, AttachmentLookup, is_attachment_id,
};

pub use self::db::DbAttachments;
pub use self::dir::DirAttachments;
pub(crate) use self::http::{download, upload};
pub use self::sniff::{ALLOWED_TYPES, sniff};

/// The default largest attachment: 10 MiB.
pub const DEFAULT_MAX_ATTACHMENT_BYTES: usize = 10 * 1024 * 1024;

/// Where attachments are kept. Each call is all-or-nothing: a failed `put` leaves nothing
/// behind, and `get` never returns a file whose record is missing or the other way round.
/// Its [`AttachmentLookup::find`] reads the record alone.
pub trait AttachmentStore: AttachmentLookup {
    /// Stores `data` under `attachment.info.id`.
    fn put<'a>(&'a self, attachment: &'a Attachment, data: Bytes) -> AttachmentFuture<'a, ()>;

    /// The attachment and its bytes; `None` for an id it does not hold.
    fn get<'a>(&'a self, id: &'a str) -> AttachmentFuture<'a, Option<(Attachment, Bytes)>>;
}

/// An [`AttachmentStore`] as a room session looks files up.
pub(crate) struct Lookup(pub(crate) std::sync::Arc<dyn AttachmentStore>);

impl AttachmentLookup for Lookup {
    fn find<'a>(&'a self, id: &'a str) -> AttachmentFuture<'a, Option<Attachment>> {
        self.0.find(id)
    }
}

/// A new random attachment id.
pub(crate) fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}
