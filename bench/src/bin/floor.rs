//! The floor server: the least a glommio HTTP server can do. One pinned executor per core,
//! SO_REUSEPORT listeners, and for every request head (`\r\n\r\n`) read, a fixed 200 response.
//! No parsing, no routing, no headers computed. Atlas's HTTP layer is measured against it
//! (`bench/RESULTS.md`): whatever Atlas costs above this is the price of doing HTTP properly.
//!
//! Usage: `atlas-floor [ADDR] [CORES]` (default `127.0.0.1:8090`, all cores). Prints
//! `floor listening on http://ADDR shards=N`.

use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};
use socket2::{Domain, Protocol, Socket, Type};

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: floor\r\nContent-Type: application/json\r\nContent-Length: 54\r\n\r\n{\"status\":\"ok\",\"shard\":0,\"shards\":1,\"version\":\"0.1.0\"}";

fn main() {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8090)));
    let cores = args
        .next()
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut fds = Vec::new();
    let mut bound = addr;
    for _ in 0..cores {
        match listen(bound) {
            Ok((fd, local)) => {
                bound = local;
                fds.push(fd);
            }
            Err(e) => {
                eprintln!("floor: cannot listen on {bound}: {e}");
                std::process::exit(1);
            }
        }
    }
    println!("floor listening on http://{bound} shards={cores}");
    let _ = std::io::stdout().flush();
    let fds = std::sync::Arc::new(std::sync::Mutex::new(fds));
    let pool = LocalExecutorPoolBuilder::new(PoolPlacement::MaxSpread(cores, None)).on_all_shards(
        move || async move {
            let Some(fd) = fds.lock().ok().and_then(|mut f| f.pop()) else {
                return;
            };
            // SAFETY: the descriptor was created for this shard and nothing else owns it.
            let listener = unsafe { TcpListener::from_raw_fd(fd) };
            while let Ok(stream) = listener.accept().await {
                glommio::spawn_local(serve(stream)).detach();
            }
        },
    );
    match pool {
        Ok(handles) => {
            handles.join_all();
        }
        Err(e) => eprintln!("floor: cannot start executors: {e}"),
    }
}

fn listen(addr: SocketAddr) -> std::io::Result<(i32, SocketAddr)> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    let local = socket.local_addr()?.as_socket().unwrap_or(addr);
    Ok((socket.into_raw_fd(), local))
}

async fn serve(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 8192];
    let mut out = Vec::with_capacity(8192);
    let mut carry = 0usize;
    loop {
        let n = match stream.read(&mut buf[carry..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let end = carry + n;
        let mut start = 0;
        while let Some(pos) = find(&buf[start..end], b"\r\n\r\n") {
            out.extend_from_slice(RESPONSE);
            start += pos + 4;
        }
        buf.copy_within(start..end, 0);
        carry = end - start;
        if carry == buf.len() {
            return;
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
