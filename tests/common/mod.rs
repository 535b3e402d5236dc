//! Test support: start the real `atlas` binary on port 0, wait for its "listening on" line,
//! and speak HTTP/1.1 to it over real sockets.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `atlas serve`, killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub shards: usize,
    stderr: mpsc::Receiver<String>,
}

impl Server {
    /// Starts `atlas serve --listen 127.0.0.1:0` with extra args and environment.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_wrapped(&[], args, env)
    }

    /// Starts `atlas serve --listen 127.0.0.1:0` under a wrapper command (`taskset -c 1`,
    /// `strace -f -o FILE`): the wrapper's words come first, then the atlas binary.
    pub fn start_wrapped(wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::spawn(
            wrapper,
            "serve",
            "127.0.0.1:0",
            "atlas listening on http://",
            args,
            env,
        )
    }

    /// Like [`Server::start`], with `configure` applied to the command before it is spawned
    /// (resource limits, credentials).
    pub fn start_with(
        args: &[&str],
        env: &[(&str, &str)],
        configure: impl FnOnce(&mut Command),
    ) -> Server {
        Self::spawn_with(
            &[],
            "serve",
            "127.0.0.1:0",
            "atlas listening on http://",
            args,
            env,
            configure,
        )
    }

    /// Starts `atlas model-endpoint --listen 127.0.0.1:0` with extra args.
    pub fn model_endpoint(args: &[&str]) -> Server {
        Self::model_endpoint_at("127.0.0.1:0", args)
    }

    /// Starts `atlas model-endpoint` on a given address (to restart one on its old port).
    pub fn model_endpoint_at(listen: &str, args: &[&str]) -> Server {
        Self::spawn(
            &[],
            "model-endpoint",
            listen,
            "atlas model-endpoint listening on http://",
            args,
            &[],
        )
    }

    /// `http://IP:PORT` of this server.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits (up to 20 s) until the server reports at least `n` requests in flight over all
    /// its shards.
    pub fn wait_in_flight(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let d = self.connect().get("/health/detailed").json();
            let in_flight: u64 = d["shards"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["in_flight"].as_u64().unwrap())
                .sum();
            if in_flight >= n {
                return;
            }
            assert!(Instant::now() < deadline, "never reached {n} in flight");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn spawn(
        wrapper: &[&str],
        subcommand: &str,
        listen: &str,
        prefix: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        Self::spawn_with(wrapper, subcommand, listen, prefix, args, env, |_| {})
    }

    #[allow(clippy::too_many_arguments)]
    fn spawn_with(
        wrapper: &[&str],
        subcommand: &str,
        listen: &str,
        prefix: &str,
        args: &[&str],
        env: &[(&str, &str)],
        configure: impl FnOnce(&mut Command),
    ) -> Server {
        let atlas = env!("CARGO_BIN_EXE_atlas");
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(atlas);
                c
            }
            None => Command::new(atlas),
        };
        cmd.arg(subcommand).arg("--listen").arg(listen).args(args);
        cmd.env_remove("ATLAS_LISTEN")
            .env_remove("ATLAS_CORES")
            .env_remove("ATLAS_ENDPOINTS")
            .env_remove("ATLAS_EMBEDDED")
            // A test run under systemd must not notify (or feed the watchdog of) its manager.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID");
        cmd.env("ATLAS_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        configure(&mut cmd);
        let mut child = cmd.spawn().expect("spawn atlas");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (line_tx, line_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = line_tx.send(line);
            }
        });
        let (err_tx, err_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = err_tx.send(line);
            }
        });
        let line = match line_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let err: Vec<String> = err_rx.try_iter().collect();
                panic!("atlas did not announce itself; stderr:\n{}", err.join("\n"));
            }
        };
        let rest = line
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("unexpected first line: {line}"));
        let (addr, shards) = rest.split_once(" shards=").unwrap();
        Server {
            child,
            addr: addr.parse().unwrap(),
            shards: shards.parse().unwrap(),
            stderr: err_rx,
        }
    }

    /// A new client connection with a 10 s read timeout.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Sends SIGHUP (a configuration reload).
    pub fn sighup(&self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGHUP);
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Stderr lines printed so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

/// A raw HTTP/1.1 client connection.
pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            reader: BufReader::new(stream),
        }
    }

    pub fn from_stream(stream: TcpStream) -> Client {
        Client {
            reader: BufReader::new(stream),
        }
    }

    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    pub fn send(&mut self, raw: &[u8]) {
        self.reader.get_mut().write_all(raw).expect("write");
    }

    pub fn get(&mut self, path: &str) -> Response {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        self.read_response(false)
    }

    /// `METHOD path` with extra `headers` (each ending in `\r\n`) and `body`; reads the
    /// response.
    pub fn request(&mut self, method: &str, path: &str, headers: &str, body: &str) -> Response {
        self.send(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: t\r\n{headers}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        self.read_response(false)
    }

    /// `POST path` with `body` as JSON; reads the response.
    pub fn post_json(&mut self, path: &str, body: &serde_json::Value) -> Response {
        let text = body.to_string();
        self.send(
            format!(
                "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            )
            .as_bytes(),
        );
        self.read_response(false)
    }

    /// Reads one response; `head_only` for responses to HEAD (no body despite Content-Length).
    pub fn read_response(&mut self, head_only: bool) -> Response {
        self.try_read_response(head_only).expect("a response")
    }

    pub fn try_read_response(&mut self, head_only: bool) -> Option<Response> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h).ok()?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (n, v) = h.split_once(':')?;
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if !head_only && status >= 200 {
            let len: usize = resp.header("Content-Length").unwrap_or("0").parse().ok()?;
            resp.body = vec![0; len];
            self.reader.read_exact(&mut resp.body).ok()?;
        }
        Some(resp)
    }

    /// True when the server closes the connection (EOF or reset) within `limit`.
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        self.reader.get_ref().set_read_timeout(Some(limit)).unwrap();
        let mut byte = [0u8; 1];
        let closed = match self.reader.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
        };
        self.reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        closed
    }
}

/// Raises this process's open-file limit to its hard limit.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only touch the struct we own.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur
}

/// A TOML configuration file in a directory of its own (removed on drop), for tests that
/// start Atlas with `--config` and rewrite it before a SIGHUP.
pub struct ConfigFile(std::path::PathBuf);

impl ConfigFile {
    /// Writes `text` to a new file; `name` keeps tests of one binary apart.
    pub fn new(name: &str, text: &str) -> ConfigFile {
        let dir = std::env::temp_dir().join(format!("atlas-config-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = ConfigFile(dir.join("atlas.toml"));
        f.write(text);
        f
    }

    /// Replaces the file's text.
    pub fn write(&self, text: &str) {
        std::fs::write(&self.0, text).unwrap();
    }

    /// The file's path, for `--config`.
    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
    }
}

/// A TCP port on 127.0.0.1 that nobody listens on now (for servers that cannot take port 0).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An HS256 token for `sub` (with the `admin` role when asked), valid for ten minutes.
pub fn hs256(secret: &str, sub: &str, admin: bool) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let roles: Vec<&str> = if admin { vec!["admin"] } else { vec![] };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": sub, "exp": now + 600, "roles": roles}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Reads the rest of an HTTP/1.1 request after its request line: the headers, then a body of
/// `Content-Length` bytes (what the fake endpoints of the tests need). `None` when the peer
/// goes away.
pub fn read_request_body(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut length = 0;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            if n.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}
