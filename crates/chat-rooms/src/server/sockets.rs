//! The cap on sockets per client address (`--max-sockets-per-ip`).
//!
//! Every connection costs a file descriptor, a task and memory; without a cap, one address
//! could open sockets until the server has no descriptors left for anyone else. A socket
//! takes a [`SocketSlot`] for its address before its handshake is answered, and gives it back
//! when it ends, whatever ends it:
//!
//! - a WebSocket (every route, Socket.IO's WebSocket transport included) keeps its slot in
//!   its connection's I/O object ([`SlotIo`]): the socket's task owns that object until the
//!   connection is gone, then drops it, and the slot with it. A refused handshake drops the
//!   slot at once;
//! - a long-poll (ours, or Socket.IO's polling `GET`) holds its slot while it is held.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How many sockets each address holds, up to a cap.
#[derive(Debug)]
pub struct SocketLimiter {
    /// The cap; 0: none.
    max: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

impl SocketLimiter {
    /// A limiter allowing `max` sockets per address (0: any number).
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            held: Mutex::new(HashMap::new()),
        })
    }

    /// The cap (0: none).
    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot for one more socket of `ip`, or `None` when it holds the most it may.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<SocketSlot> {
        if self.max == 0 {
            return Some(SocketSlot { held: None, ip });
        }
        // A poisoned lock only means another thread panicked while counting: the counts
        // themselves are whole (each update is one statement).
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(SocketSlot {
            held: Some(self.clone()),
            ip,
        })
    }

    /// The sockets `ip` holds.
    #[cfg(test)]
    pub fn held(&self, ip: IpAddr) -> usize {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.get(&ip).copied().unwrap_or(0)
    }

    fn release(&self, ip: IpAddr) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                // Addresses come and go: keep only those that hold sockets.
                held.remove(&ip);
            }
        }
    }
}

/// One socket's place in its address's count, given back when dropped.
#[derive(Debug)]
pub struct SocketSlot {
    /// `None` when there is no cap (nothing to give back).
    held: Option<Arc<SocketLimiter>>,
    ip: IpAddr,
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        if let Some(limiter) = &self.held {
            limiter.release(self.ip);
        }
    }
}

/// Where a connection keeps the slot of the WebSocket it became, so the slot lives exactly
/// as long as the connection's I/O object. Set at most once: a connection upgrades once.
pub type ConnectionSlot = Arc<OnceLock<SocketSlot>>;

/// A connection's I/O with the [`ConnectionSlot`] of its socket. After an upgrade, hyper hands
/// this object to the socket's task; dropping it (the socket ended) releases the slot.
pub struct SlotIo<S> {
    io: S,
    _slot: ConnectionSlot,
}

impl<S> SlotIo<S> {
    /// `io`, holding whatever slot `slot` is given.
    pub fn new(io: S, slot: ConnectionSlot) -> Self {
        Self { io, _slot: slot }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SlotIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SlotIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_address_and_given_back() {
        let limiter = SocketLimiter::new(2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let first = limiter.acquire(a);
        let second = limiter.acquire(a);
        assert!(first.is_some() && second.is_some());
        assert!(limiter.acquire(a).is_none(), "a third for the same address");
        assert!(
            limiter.acquire(b).is_some(),
            "another address has its own count"
        );
        drop(first);
        assert_eq!(limiter.held(a), 1);
        assert!(limiter.acquire(a).is_some());
        drop(second);
        assert_eq!(limiter.held(a), 0);
        assert!(
            limiter
                .held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
        );
    }

    #[test]
    fn no_cap_counts_nothing() {
        let limiter = SocketLimiter::new(0);
        let a: IpAddr = [10, 0, 0, 1].into();
        let slots: Vec<_> = (0..1000).filter_map(|_| limiter.acquire(a)).collect();
        assert_eq!(slots.len(), 1000);
        assert_eq!(limiter.held(a), 0);
    }
}
