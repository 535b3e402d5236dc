//! The floor server: the least a glommio HTTP server can do. One executor per core, each
//! pinned to one CPU of this process's affinity mask (so `taskset`, cgroup cpusets and
//! `atlas-bench scale` place it exactly as they place Atlas), SO_REUSEPORT listeners, and for
//! every request head (`\r\n\r\n`) read, a fixed 200 response. No parsing, no routing, no
//! headers computed. Atlas's HTTP layer is measured against it (`bench/RESULTS.md`): whatever
//! Atlas costs above this is the price of doing HTTP properly.
//!
//! Usage: `atlas-floor [ADDR] [CORES]` (default `127.0.0.1:8090`, one executor per allowed
//! CPU; CORES takes the first CORES allowed CPUs). Prints
//! `floor listening on http://ADDR shards=N` on stdout once bound, the CPUs on stderr.
//! Exit status 2 for a bad ADDR or CORES, 1 when it cannot listen or start.

use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{CpuSet, LocalExecutorPoolBuilder, PoolPlacement};
use socket2::{Domain, Protocol, Socket, Type};

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: floor\r\nContent-Type: application/json\r\nContent-Length: 54\r\n\r\n{\"status\":\"ok\",\"shard\":0,\"shards\":1,\"version\":\"0.1.0\"}";

fn main() {
    std::process::exit(run());
}

fn run() -> i32 {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = match args.next() {
        None => SocketAddr::from(([127, 0, 0, 1], 8090)),
        Some(a) => match a.parse() {
            Ok(addr) => addr,
            Err(_) => {
                eprintln!("floor: ADDR `{a}` is not IP:PORT");
                return 2;
            }
        },
    };
    let allowed = match allowed_cpus() {
        Ok(cpus) if !cpus.is_empty() => cpus,
        Ok(_) => {
            eprintln!("floor: this process may run on no CPU");
            return 1;
        }
        Err(e) => {
            eprintln!("floor: cannot read the CPU affinity mask: {e}");
            return 1;
        }
    };
    let cores = match args.next().map(|c| c.parse::<usize>()) {
        None => allowed.len(),
        Some(Ok(n)) if (1..=allowed.len()).contains(&n) => n,
        Some(_) => {
            eprintln!(
                "floor: CORES must be 1..={} (this process may run on CPUs {allowed:?})",
                allowed.len()
            );
            return 2;
        }
    };
    let cpus = &allowed[..cores];
    let online = match CpuSet::online() {
        Ok(set) => set,
        Err(e) => {
            eprintln!("floor: cannot list CPUs: {e}");
            return 1;
        }
    };
    let placement: Vec<CpuSet> = cpus
        .iter()
        .map(|&cpu| online.clone().filter(|l| l.cpu == cpu))
        .collect();
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
                return 1;
            }
        }
    }
    println!("floor listening on http://{bound} shards={cores}");
    let _ = std::io::stdout().flush();
    eprintln!("floor: one executor on each of CPUs {cpus:?}");
    let fds = std::sync::Arc::new(std::sync::Mutex::new(fds));
    let pool = LocalExecutorPoolBuilder::new(PoolPlacement::Custom(placement)).on_all_shards(
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
            0
        }
        Err(e) => {
            eprintln!("floor: cannot start executors: {e}");
            1
        }
    }
}

/// The CPUs this process may run on (sched_getaffinity), sorted. glommio's
/// `CpuSet::online()` lists every online CPU, ignoring the mask.
fn allowed_cpus() -> std::io::Result<Vec<usize>> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: CPU_ISSET reads the set we own; every index is below CPU_SETSIZE.
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
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
