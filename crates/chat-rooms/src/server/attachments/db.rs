//! [`DbAttachments`]: attachments in the chat store's database (its `files` table), so that
//! every node sharing one PostgreSQL serves every file. One row holds the record and the
//! bytes, written in one statement: a failed upload leaves nothing.

use bytes::Bytes;
use chat_core::Timestamp;
use chat_store::{Store, StoredFile};

use super::{
    Attachment, AttachmentError, AttachmentFuture, AttachmentInfo, AttachmentLookup,
    AttachmentStore, is_attachment_id,
};

/// Attachments kept in the store's database.
#[derive(Clone)]
pub struct DbAttachments {
    store: Store,
}

impl DbAttachments {
    /// Attachments in `store`'s database.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn backend(e: chat_core::StoreError) -> AttachmentError {
    AttachmentError::Backend(Box::new(e))
}

fn attachment(f: StoredFile) -> Attachment {
    Attachment {
        info: AttachmentInfo {
            id: f.id,
            name: f.name,
            content_type: f.content_type,
            size: f.size,
        },
        room: f.room,
        uploader: f.uploader,
    }
}

impl AttachmentLookup for DbAttachments {
    fn find<'a>(&'a self, id: &'a str) -> AttachmentFuture<'a, Option<Attachment>> {
        Box::pin(async move {
            if !is_attachment_id(id) {
                return Ok(None);
            }
            Ok(self.store.file(id).await.map_err(backend)?.map(attachment))
        })
    }
}

impl AttachmentStore for DbAttachments {
    fn put<'a>(&'a self, a: &'a Attachment, data: Bytes) -> AttachmentFuture<'a, ()> {
        Box::pin(async move {
            let file = StoredFile {
                id: a.info.id.clone(),
                room: a.room.clone(),
                uploader: a.uploader.clone(),
                name: a.info.name.clone(),
                content_type: a.info.content_type.clone(),
                size: a.info.size,
                created_at: Timestamp::now(),
            };
            self.store.put_file(&file, &data).await.map_err(backend)
        })
    }

    fn get<'a>(&'a self, id: &'a str) -> AttachmentFuture<'a, Option<(Attachment, Bytes)>> {
        Box::pin(async move {
            if !is_attachment_id(id) {
                return Ok(None);
            }
            let found = self.store.file_with_data(id).await.map_err(backend)?;
            Ok(found.map(|(f, data)| (attachment(f), Bytes::from(data))))
        })
    }
}
