//! A write as both backends' writers see it: the op, the caller waiting for its answer, and
//! the rule that nobody hears "stored" before the commit.

use std::sync::Arc;

use chat_core::{Appended, Committed, NewMessage, RoomKind, RoomName, Seq, StoreError};
use tokio::sync::oneshot;

/// A write the writer performs.
pub(crate) enum WriteOp {
    Append(NewMessage, oneshot::Sender<Result<Appended, StoreError>>),
    MarkRead {
        room: RoomName,
        user: i64,
        seq: Seq,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// What one op did inside a batch, delivered to its caller once the batch committed.
// Nearly every op is an append: boxing it would cost an allocation per message to save
// space in the rare read marks.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Done {
    Appended(Appended),
    Read,
}

/// Where an op's answer goes. Kept outside the transaction so that a failed batch can still
/// answer every caller.
pub(crate) enum Reply {
    Append(oneshot::Sender<Result<Appended, StoreError>>),
    Read(oneshot::Sender<Result<(), StoreError>>),
}

/// An op without its reply channel.
pub(crate) enum Op {
    Append(NewMessage),
    MarkRead { room: RoomName, user: i64, seq: Seq },
}

pub(crate) fn split(op: WriteOp) -> (Op, Reply) {
    match op {
        WriteOp::Append(msg, tx) => (Op::Append(msg), Reply::Append(tx)),
        WriteOp::MarkRead {
            room,
            user,
            seq,
            done,
        } => (Op::MarkRead { room, user, seq }, Reply::Read(done)),
    }
}

/// The `kind` column of a room.
pub(crate) fn room_kind(room: &RoomName) -> &'static str {
    match room.kind() {
        RoomKind::Public => "public",
        RoomKind::Pair(_) => "pair",
    }
}

/// Records a batch that ran on `backend` (`sqlite`, `postgres`): how long its commit took,
/// how many writes it held, the messages it stored (see [`chat_core::metrics`]). Once per
/// batch, so its cost is shared by every write of the batch.
pub(crate) fn record_commit(
    backend: &'static str,
    started: std::time::Instant,
    ops: usize,
    result: &Result<Vec<Done>, String>,
) {
    use chat_core::metrics as m;
    metrics::histogram!(m::STORE_COMMIT_SECONDS, "backend" => backend)
        .record(started.elapsed().as_secs_f64());
    metrics::histogram!(m::STORE_BATCH_SIZE, "backend" => backend).record(ops as f64);
    match result {
        Ok(done) => {
            let stored = done
                .iter()
                .filter(|d| matches!(d, Done::Appended(a) if !a.duplicate))
                .count();
            if stored > 0 {
                metrics::counter!(m::MESSAGES_STORED, "backend" => backend)
                    .increment(stored as u64);
            }
        }
        Err(_) => metrics::counter!(m::STORE_COMMIT_ERRORS, "backend" => backend).increment(1),
    }
}

/// Tells every new message of a commit that stored several what else it stored, so that
/// one caller publishes them all in order (see [`Committed`]).
fn share_commit(done: &mut [Done]) {
    let new = |d: &Done| matches!(d, Done::Appended(a) if !a.duplicate);
    if done.iter().filter(|d| new(d)).count() < 2 {
        return;
    }
    let messages = done
        .iter()
        .filter_map(|d| match d {
            Done::Appended(a) if !a.duplicate => Some(a.message.clone()),
            _ => None,
        })
        .collect();
    let committed = Arc::new(Committed::new(messages));
    for d in done.iter_mut() {
        if let Done::Appended(a) = d {
            if !a.duplicate {
                a.committed = Some(committed.clone());
            }
        }
    }
}

/// Answers every caller of a batch: with its result once the transaction committed, or —
/// when anything failed and the whole batch rolled back — with [`StoreError::Unavailable`]
/// and the reason. Nothing is ever acknowledged before its commit.
pub(crate) fn answer(replies: Vec<Reply>, result: Result<Vec<Done>, String>) {
    match result {
        Ok(mut done) => {
            share_commit(&mut done);
            for (reply, done) in replies.into_iter().zip(done) {
                // A caller that stopped waiting is no error: its write is stored all the same.
                match (reply, done) {
                    (Reply::Append(tx), Done::Appended(a)) => {
                        let _ = tx.send(Ok(a));
                    }
                    (Reply::Read(tx), Done::Read) => {
                        let _ = tx.send(Ok(()));
                    }
                    // Writers answer op by op in order, so kinds always match; were they not,
                    // dropping the sender makes the caller see "not stored".
                    _ => {}
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, ops = replies.len(), "a write batch failed and was rolled back");
            let err = || StoreError::Unavailable(format!("the write was not stored: {e}"));
            for reply in replies {
                match reply {
                    Reply::Append(tx) => {
                        let _ = tx.send(Err(err()));
                    }
                    Reply::Read(tx) => {
                        let _ = tx.send(Err(err()));
                    }
                }
            }
        }
    }
}
