//! One connection slot of a driver thread: its socket (which comes and goes), its buffers
//! (which stay), the request on the wire, and what reading it produced.

use std::time::Instant;

use socket2::Socket;

use super::super::http::Head;
use super::super::stats::ErrorKind;
use super::super::workload::Operation;

/// A request on the wire.
#[derive(Clone, Copy, Debug)]
pub(super) struct InFlight {
    pub(super) op: Operation,
    /// Open loop: the scheduled send time. Closed loop: when it was issued.
    pub(super) scheduled: Instant,
    pub(super) sent: Instant,
    pub(super) deadline: Instant,
}

/// One connection slot; its socket comes and goes, its buffers stay.
pub(super) struct Conn {
    pub(super) sock: Option<Socket>,
    /// Bumped whenever the socket changes, so events for a closed socket are ignored.
    pub(super) generation: u32,
    pub(super) connected: bool,
    pub(super) wbuf: Vec<u8>,
    pub(super) woff: usize,
    pub(super) rbuf: Vec<u8>,
    pub(super) rlen: usize,
    /// The parsed head of the response being read.
    pub(super) head: Option<Head>,
    pub(super) req: Option<InFlight>,
    /// Closed loop: the virtual user this slot plays, and its next request number.
    pub(super) vuser: u64,
    pub(super) next_seq: u64,
    /// Closed loop: when to issue the next request after a connect failure.
    pub(super) retry_at: Option<Instant>,
    /// Closed loop: this user has finished.
    pub(super) done: bool,
}

impl Conn {
    pub(super) fn new(vuser: u64) -> Conn {
        Conn {
            sock: None,
            generation: 0,
            connected: false,
            wbuf: Vec::new(),
            woff: 0,
            rbuf: Vec::new(),
            rlen: 0,
            head: None,
            req: None,
            vuser,
            next_seq: 0,
            retry_at: None,
            done: false,
        }
    }

    pub(super) fn token(&self, idx: usize) -> u64 {
        (u64::from(self.generation) << 32) | idx as u64
    }

    /// Drops the socket (closing it removes it from epoll) and forgets any partial response.
    pub(super) fn close(&mut self) {
        self.sock = None;
        self.generation = self.generation.wrapping_add(1);
        self.connected = false;
        self.woff = 0;
        self.wbuf.clear();
        self.rlen = 0;
        self.head = None;
    }
}

/// What reading a connection produced.
pub(super) enum ReadOutcome {
    /// Nothing complete yet.
    Pending,
    /// A full response; `close` when the connection cannot be reused (bytes followed that
    /// no request asked for, or the peer shut down its side).
    Response {
        head: Head,
        close: bool,
    },
    /// The peer closed a connection with no request on it.
    IdleClosed,
    Failed(ErrorKind),
}
