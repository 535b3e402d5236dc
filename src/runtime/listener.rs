//! Listening sockets: one per shard, all bound to the same address with `SO_REUSEPORT` so the
//! kernel spreads new connections across shards.
//!
//! The sockets are created here, before any executor starts, so that a bind error is reported
//! plainly and port 0 resolves once (the first socket binds, the rest join its port). They are
//! created with socket2 rather than glommio's `TcpListener::bind` because glommio hard-codes a
//! backlog of 1024 whatever `net.core.somaxconn` says.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

/// Binds `count` listening sockets to `addr` (port 0: a free port chosen once for all of them)
/// and returns their raw descriptors and the bound address.
pub fn bind_all(
    addr: SocketAddr,
    count: usize,
    backlog: u32,
) -> io::Result<(Vec<RawFd>, SocketAddr)> {
    let mut fds = Vec::with_capacity(count);
    let mut bound = addr;
    for _ in 0..count {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nodelay(true)?;
        socket.set_nonblocking(true)?;
        socket.set_cloexec(true)?;
        socket.bind(&bound.into())?;
        socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
        if bound.port() == 0 {
            bound = socket
                .local_addr()?
                .as_socket()
                .ok_or_else(|| io::Error::other("listening socket has no IP address"))?;
        }
        fds.push(socket.into_raw_fd());
    }
    Ok((fds, bound))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_resolves_once_for_every_socket() {
        let (fds, addr) = bind_all("127.0.0.1:0".parse().unwrap(), 3, 128).unwrap();
        assert_ne!(addr.port(), 0);
        for fd in fds {
            // SAFETY: fd came from into_raw_fd above and is owned by nobody else.
            let socket = unsafe { <Socket as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            assert_eq!(socket.local_addr().unwrap().as_socket().unwrap(), addr);
        }
    }
}
