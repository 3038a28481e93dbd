//! [`DirAttachments`]: attachments as files in a directory (the data directory's
//! `attachments/`), for the embedded default and single-node deployments.
//!
//! Each attachment is two files, `<id>.bin` (the bytes) and `<id>.json` (the record). Both
//! are written to a temporary name and renamed into place, the record last: a reader finds
//! the record only once the bytes are complete, and a failed write removes what it wrote.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{
    Attachment, AttachmentError, AttachmentFuture, AttachmentLookup, AttachmentStore,
    is_attachment_id,
};

/// Attachments kept as files under one directory.
#[derive(Debug, Clone)]
pub struct DirAttachments {
    dir: PathBuf,
}

impl DirAttachments {
    /// Attachments under `dir` (created on the first upload).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, id: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{id}.{ext}"))
    }
}

/// Writes `data` to `path` through a temporary file in the same directory.
async fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let written = async {
        tokio::fs::write(&tmp, data).await?;
        tokio::fs::rename(&tmp, path).await
    }
    .await;
    if written.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    written
}

impl AttachmentLookup for DirAttachments {
    fn find<'a>(&'a self, id: &'a str) -> AttachmentFuture<'a, Option<Attachment>> {
        Box::pin(async move {
            if !is_attachment_id(id) {
                return Ok(None);
            }
            match tokio::fs::read(self.path(id, "json")).await {
                Ok(record) => Ok(Some(serde_json::from_slice(&record)?)),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
    }
}

impl AttachmentStore for DirAttachments {
    fn put<'a>(&'a self, attachment: &'a Attachment, data: Bytes) -> AttachmentFuture<'a, ()> {
        Box::pin(async move {
            let id = &attachment.info.id;
            if !is_attachment_id(id) {
                return Err(AttachmentError::Io(std::io::Error::new(
                    ErrorKind::InvalidInput,
                    "not an attachment id",
                )));
            }
            tokio::fs::create_dir_all(&self.dir).await?;
            let record = serde_json::to_vec(attachment)?;
            let bin = self.path(id, "bin");
            write_atomically(&bin, &data).await?;
            if let Err(e) = write_atomically(&self.path(id, "json"), &record).await {
                let _ = tokio::fs::remove_file(&bin).await;
                return Err(e.into());
            }
            Ok(())
        })
    }

    fn get<'a>(&'a self, id: &'a str) -> AttachmentFuture<'a, Option<(Attachment, Bytes)>> {
        Box::pin(async move {
            let Some(attachment) = self.find(id).await? else {
                return Ok(None);
            };
            let data = tokio::fs::read(self.path(id, "bin")).await?;
            Ok(Some((attachment, Bytes::from(data))))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chat_core::RoomName;

    use super::*;
    use crate::server::attachments::AttachmentInfo;

    fn attachment(id: &str) -> Attachment {
        Attachment {
            info: AttachmentInfo {
                id: id.into(),
                name: "rex.png".into(),
                content_type: "image/png".into(),
                size: 3,
            },
            room: RoomName::parse("dm_1_2").unwrap(),
            uploader: "u:1".into(),
        }
    }

    #[tokio::test]
    async fn what_is_put_comes_back_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirAttachments::new(dir.path().join("attachments"));
        let id = "0123456789abcdef0123456789abcdef";
        assert!(store.get(id).await.unwrap().is_none(), "nothing yet");
        store
            .put(&attachment(id), Bytes::from_static(b"abc"))
            .await
            .unwrap();
        let (a, data) = store.get(id).await.unwrap().unwrap();
        assert_eq!((a, &data[..]), (attachment(id), &b"abc"[..]));
        // Ids that are not ours never reach the file system.
        for bad in ["../../etc/passwd", "0123456789ABCDEF0123456789ABCDEF", ""] {
            assert!(store.get(bad).await.unwrap().is_none(), "{bad}");
            assert!(
                store.put(&attachment(bad), Bytes::new()).await.is_err(),
                "{bad}"
            );
        }
        let mut files: Vec<_> = std::fs::read_dir(dir.path().join("attachments"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        assert_eq!(
            files,
            [format!("{id}.bin"), format!("{id}.json")],
            "no temporaries left"
        );
    }

    #[tokio::test]
    async fn a_failed_put_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirAttachments::new(dir.path());
        let id = "fedcba9876543210fedcba9876543210";
        // The record cannot take its place (a directory is in the way): the bytes written
        // before it go too.
        std::fs::create_dir(dir.path().join(format!("{id}.json"))).unwrap();
        std::fs::write(dir.path().join(format!("{id}.json")).join("x"), b"").unwrap();
        assert!(
            store
                .put(&attachment(id), Bytes::from_static(b"abc"))
                .await
                .is_err()
        );
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, [format!("{id}.json")], "only what was in the way");
        assert!(
            store.get(id).await.is_err(),
            "a record that is not a file is an error"
        );
    }
}
