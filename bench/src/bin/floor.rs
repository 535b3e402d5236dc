//! The floor server: the least a glommio HTTP server can do. One executor per core, each
//! pinned to one CPU of this process's affinity mask (so `taskset`, cgroup cpusets and
//! `atlas-bench scale` place it exactly as they place Atlas), SO_REUSEPORT listeners, and for
//! every request head (`\r\n\r\n`) read, a fixed 200 response. No parsing, no routing, no
//! headers computed. Atlas's HTTP layer is measured against it (`bench/RESULTS.md`): whatever
//! Atlas costs above this is the price of doing HTTP properly.
//!
//! Usage: `atlas-floor [ADDR] [CORES] [--hop]` (default `127.0.0.1:8090`, one executor per
//! allowed CPU; CORES takes the first CORES allowed CPUs). Prints
//! `floor listening on http://ADDR shards=N` on stdout once bound, the CPUs on stderr.
//! Exit status 2 for a bad ADDR or CORES, 1 when it cannot listen or start.
//!
//! `--hop` is the anchor for Atlas's cross-core hop: each request is sent to a core chosen in
//! turn (so with N cores, (N-1)/N of them leave the core that read them, as Atlas's hashed
//! keys do) over glommio's channel mesh, answered there, and the answer comes back the same
//! way before the fixed response is written. The naive hop: one channel message and one
//! shard-local oneshot per request, no batching.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;

use atlas::oneshot;
use glommio::channels::channel_mesh::{Full, MeshBuilder, Senders};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{CpuSet, LocalExecutorPoolBuilder, PoolPlacement};
use socket2::{Domain, Protocol, Socket, Type};

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: floor\r\nContent-Type: application/json\r\nContent-Length: 54\r\n\r\n{\"status\":\"ok\",\"shard\":0,\"shards\":1,\"version\":\"0.1.0\"}";

fn main() {
    std::process::exit(run());
}

fn run() -> i32 {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    let hop = argv.iter().any(|a| a == "--hop");
    argv.retain(|a| a != "--hop");
    let mut args = argv.into_iter();
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
    eprintln!(
        "floor: one executor on each of CPUs {cpus:?}{}",
        if hop {
            ", requests hop between cores"
        } else {
            ""
        }
    );
    let fds = std::sync::Arc::new(std::sync::Mutex::new(fds));
    // Room for every request in flight: a sender never waits on a full channel.
    let mesh = MeshBuilder::<Msg, Full>::full(cores, 4096);
    let pool = LocalExecutorPoolBuilder::new(PoolPlacement::Custom(placement)).on_all_shards(
        move || async move {
            let Some(fd) = fds.lock().ok().and_then(|mut f| f.pop()) else {
                return;
            };
            let hops = if hop {
                match Hops::join(mesh).await {
                    Some(h) => Some(h),
                    None => return,
                }
            } else {
                None
            };
            // SAFETY: the descriptor was created for this shard and nothing else owns it.
            let listener = unsafe { TcpListener::from_raw_fd(fd) };
            while let Ok(stream) = listener.accept().await {
                glommio::spawn_local(serve(stream, hops.clone())).detach();
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

/// A hop message: a request (`reply == false`) or its answer, with the call id.
#[derive(Clone, Copy)]
struct Msg {
    id: u64,
    reply: bool,
}

/// One core's end of the hop mesh.
struct HopState {
    me: usize,
    cores: usize,
    senders: Senders<Msg>,
    pending: RefCell<HashMap<u64, oneshot::Sender<()>>>,
    next_id: Cell<u64>,
    next_core: Cell<usize>,
}

#[derive(Clone)]
struct Hops(Rc<HopState>);

impl Hops {
    /// Joins the mesh and starts one receive task per peer.
    async fn join(mesh: MeshBuilder<Msg, Full>) -> Option<Hops> {
        let (senders, mut receivers) = mesh.join().await.ok()?;
        let state = Rc::new(HopState {
            me: senders.peer_id(),
            cores: senders.nr_consumers(),
            senders,
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(0),
            next_core: Cell::new(0),
        });
        for (peer, receiver) in receivers.streams() {
            let state = Rc::clone(&state);
            glommio::spawn_local(async move {
                while let Some(msg) = receiver.recv().await {
                    if msg.reply {
                        let waiter = state.pending.borrow_mut().remove(&msg.id);
                        if let Some(tx) = waiter {
                            tx.send(());
                        }
                    } else {
                        let _ = state.send(peer, Msg { reply: true, ..msg }).await;
                    }
                }
            })
            .detach();
        }
        Some(Hops(state))
    }

    /// Answers one request on the next core in turn (here, without a message, when it is
    /// this one).
    async fn answer(&self) {
        let s = &self.0;
        let target = s.next_core.get();
        s.next_core.set((target + 1) % s.cores);
        if target == s.me {
            return;
        }
        let id = s.next_id.get();
        s.next_id.set(id + 1);
        let (tx, rx) = oneshot::channel();
        s.pending.borrow_mut().insert(id, tx);
        if !s.send(target, Msg { id, reply: false }).await {
            s.pending.borrow_mut().remove(&id);
        }
        let _ = rx.await;
    }
}

impl HopState {
    async fn send(&self, peer: usize, msg: Msg) -> bool {
        // The channel holds more than all requests in flight, so it is never full; should it
        // be, wait a little rather than have two tasks await one full channel (glommio
        // panics then). A peer that stays unreachable for a second is given up on.
        for _ in 0..100_000 {
            if self.senders.try_send_to(peer, msg).is_ok() {
                return true;
            }
            glommio::timer::sleep(std::time::Duration::from_micros(10)).await;
        }
        false
    }
}

async fn serve(mut stream: TcpStream, hops: Option<Hops>) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 8192];
    let mut out = Vec::with_capacity(8192);
    let mut carry = 0usize;
    let heads = memchr::memmem::Finder::new(b"\r\n\r\n");
    loop {
        let n = match stream.read(&mut buf[carry..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let end = carry + n;
        let mut start = 0;
        while let Some(pos) = heads.find(&buf[start..end]) {
            if let Some(h) = &hops {
                h.answer().await;
            }
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
