//! A room's event, encoded once per thread for every Socket.IO socket that gets it.
//!
//! A message to a room of 1,000 reaches each member's consumer as the same shared text
//! (`Utf8Bytes`, one buffer). socketioxide's `emit` would check, serialize and frame it once
//! per socket: three allocations and copies each. Here the first socket on a thread encodes
//! it (with the patched socketioxide's `encode_event`, vendor/README.md) and the others send
//! the same encoded packet, a reference-counted clone.

use std::collections::{HashMap, VecDeque};

use chat_ws::Utf8Bytes;
use serde_json::value::RawValue;
use socketioxide::SendError;
use socketioxide::extract::SocketRef;
use socketioxide::handler::Value;

/// Events kept, at most (a socket takes a burst of a room's messages at a time).
const KEEP: usize = 512;

thread_local! {
    static ENCODED: std::cell::RefCell<Encoded> = std::cell::RefCell::new(Encoded::default());
}

/// Events this thread encoded lately, by the address of their payload. The entry keeps the
/// consumer's text alive, so that address cannot be reused by another text meanwhile.
#[derive(Default)]
struct Encoded {
    events: HashMap<usize, Entry, foldhash::fast::FixedState>,
    order: VecDeque<usize>,
}

struct Entry {
    text: Utf8Bytes,
    /// The namespace it was encoded for: the packet names it.
    namespace: Box<str>,
    packet: Value,
}

/// Emits `name` with the JSON `data`, a slice of the consumer's `text`, on `socket`.
pub(super) fn emit(
    socket: &SocketRef,
    text: &Utf8Bytes,
    name: &str,
    data: &str,
) -> Result<(), SendError> {
    let key = data.as_ptr() as usize;
    let namespace = socket.ns();
    let cached = ENCODED.with_borrow(|e| {
        let entry = e.events.get(&key)?;
        (entry.text.as_str().len() == text.as_str().len() && &*entry.namespace == namespace)
            .then(|| entry.packet.clone())
    });
    if let Some(packet) = cached {
        return socket.emit_encoded(packet);
    }
    let Some(value) = raw(data) else {
        return Ok(());
    };
    let packet = socket.encode_event(name, &*value)?;
    ENCODED.with_borrow_mut(|e| {
        let entry = Entry {
            text: text.clone(),
            namespace: namespace.into(),
            packet: packet.clone(),
        };
        if e.events.insert(key, entry).is_none() {
            e.order.push_back(key);
        }
        while e.order.len() > KEEP {
            if let Some(old) = e.order.pop_front() {
                e.events.remove(&old);
            }
        }
    });
    socket.emit_encoded(packet)
}

/// The consumer's JSON as a value socketioxide writes as it is; `None` (logged) if it is not
/// JSON, which would be a bug of ours.
pub(super) fn raw(data: &str) -> Option<Box<RawValue>> {
    match RawValue::from_string(data.to_owned()) {
        Ok(value) => Some(value),
        Err(e) => {
            tracing::error!(error = %e, "the consumer sent an invalid Socket.IO payload");
            None
        }
    }
}
