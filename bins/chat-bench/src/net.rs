//! Sockets for many connections on one machine: a long accept backlog, source addresses spread
//! over 127.0.0.x (each has its own ~28,000 ephemeral ports, so 50,000+ connections fit on
//! loopback), and the open-files limit raised as far as the system allows.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Source addresses used: 127.0.0.2 … 127.0.0.(1 + SOURCES).
const SOURCES: u32 = 200;

/// Raises this process's open-files limit to the hard limit; returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}

/// A listening socket with a 4,096-connection backlog.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4_096)
}

/// Connects to `server` from source address number `n` (127.0.0.2 upwards, round robin),
/// when the server is on loopback; from the default address otherwise.
pub async fn connect(server: SocketAddr, n: usize) -> std::io::Result<TcpStream> {
    let stream = match server {
        SocketAddr::V4(v4) if v4.ip().is_loopback() => {
            let socket = TcpSocket::new_v4()?;
            let last = 2 + (n as u32 % SOURCES);
            let source = Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 0)) + last);
            socket.bind(SocketAddr::V4(SocketAddrV4::new(source, 0)))?;
            socket.connect(server).await?
        }
        _ => TcpStream::connect(server).await?,
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}
