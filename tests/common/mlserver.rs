//! Test support: a real MLServer (PyPI `mlserver`, which `tests/run.sh` installs into the
//! test virtual environment) serving the runtime of `examples/mlserver/` over the Open
//! Inference Protocol, on free ports in a temporary model repository, killed when dropped.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::free_port;

/// A running `mlserver start`.
pub struct MlServer {
    child: Option<Child>,
    /// HTTP (REST) port.
    pub port: u16,
    grpc_port: u16,
    /// The model repository (and the server's log, `mlserver.log`).
    pub dir: PathBuf,
}

impl MlServer {
    /// Serves one model per `(name, settings)`: the runtime `atlas_runtime.AtlasModel` with
    /// `settings` merged into its `model-settings.json` (`mode` and `batch_log` go in
    /// `parameters.extra`; `batch_log` is always `DIR/NAME.batches`).
    pub fn start(models: &[(&str, Value)]) -> MlServer {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("atlas-mlserver-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut grpc_port = free_port();
        while grpc_port == port {
            grpc_port = free_port();
        }
        let settings = json!({"parallel_workers": 0, "metrics_endpoint": null, "host": "127.0.0.1",
            "http_port": port, "grpc_port": grpc_port, "load_models_at_startup": true});
        std::fs::write(dir.join("settings.json"), settings.to_string()).unwrap();
        for (name, extra) in models {
            write_model(&dir, name, extra);
        }
        let mut m = MlServer {
            child: None,
            port,
            grpc_port,
            dir,
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let runtime = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mlserver");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("mlserver.log"))
            .unwrap();
        let child = Command::new("mlserver")
            .arg("start")
            .arg(&self.dir)
            .current_dir(&self.dir)
            .env("PYTHONPATH", &runtime)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("mlserver (PyPI `mlserver`; tests/run.sh installs it into target/test-venv)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if matches!(self.http("GET", "/v2/health/ready", ""), Some((200, _))) {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("mlserver exited ({status}):\n{}", self.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "mlserver did not become ready:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Adds model `name` to the repository (as [`MlServer::start`] would) without loading
    /// it: `POST /v2/repository/models/NAME/load` loads it.
    pub fn add_model(&self, name: &str, settings: Value) {
        write_model(&self.dir, name, &settings);
    }

    /// The end of the server's log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("mlserver.log")).unwrap_or_default();
        let chars: Vec<char> = log.chars().collect();
        chars[chars.len().saturating_sub(4000)..].iter().collect()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One request with `Connection: close`: status and body, `None` when it cannot connect.
    pub fn http(&self, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).ok()?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).ok()?;
        let text = String::from_utf8_lossy(&raw).to_string();
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((status, body))
    }

    /// The batch size of every inference request model `name` received, in order.
    pub fn batch_sizes(&self, name: &str) -> Vec<usize> {
        std::fs::read_to_string(self.dir.join(format!("{name}.batches")))
            .unwrap_or_default()
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect()
    }

    /// Kills the server (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same ports with the same models.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

/// Writes `DIR/NAME/model-settings.json`: the runtime with `settings` merged in (`mode` and
/// the other runtime options go in `parameters.extra`; `batch_log` is `DIR/NAME.batches`).
fn write_model(dir: &Path, name: &str, settings: &Value) {
    let model_dir = dir.join(name);
    std::fs::create_dir_all(&model_dir).unwrap();
    let mut s = json!({"name": name, "implementation": "atlas_runtime.AtlasModel",
        "parameters": {"extra": {"batch_log": dir.join(format!("{name}.batches"))}}});
    for (k, v) in settings.as_object().unwrap() {
        if ["mode", "load_seconds"].contains(&k.as_str()) {
            s["parameters"]["extra"][k] = v.clone();
        } else {
            s[k] = v.clone();
        }
    }
    std::fs::write(model_dir.join("model-settings.json"), s.to_string()).unwrap();
}

impl Drop for MlServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
