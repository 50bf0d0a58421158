//! What the HTTP benches share: a spawned `twinlattice serve`, a minimal
//! keep-alive HTTP/1.1 client for the load phases, latency statistics, and
//! the closed-loop and fixed-rate (open-loop) load generators.
//!
//! Each bench includes this with `mod support;` and uses only part of it.
#![allow(dead_code)]

pub mod i40;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub type AnyError = Box<dyn std::error::Error + Send + Sync>;

pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A running `twinlattice serve`, killed on drop.
pub struct Host {
    child: Child,
    pub addr: SocketAddr,
    /// The CoAP inbox and the admin endpoint, as the host announced them.
    pub coap: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    /// The admin token the host wrote to its data directory.
    pub admin_token: String,
    /// The host's data directory.
    pub data: std::path::PathBuf,
}

/// CPU time (user + system, all threads) process `pid` has used so far, in
/// seconds, from /proc (USER_HZ is 100 on Linux, whatever the kernel's HZ).
pub fn cpu_seconds(pid: u32) -> Result<f64, AnyError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name, which may hold spaces.
    let rest = stat.rsplit_once(')').ok_or("malformed /proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64, AnyError> { Ok(fields.get(i).ok_or("short /proc stat")?.parse::<f64>()?) };
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Host {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident and peak resident memory (VmRSS, VmHWM) in kB.
    pub fn memory_kb(&self) -> Result<(u64, u64), AnyError> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| -> Result<u64, AnyError> {
            let line = status.lines().find(|l| l.starts_with(name)).ok_or_else(|| format!("no {name} in /proc status"))?;
            Ok(line.trim_start_matches(name).trim().trim_end_matches("kB").trim().parse()?)
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// CPU seconds (user + system) the host process has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start at ')'.
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
            + fields.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        ticks / 100.0
    }

    /// Stop the host and wait until it has exited (so its store file is
    /// free for another process).
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `twinlattice serve --port 0` on `data` with `extra` arguments. The
/// compiled-code cache is `cache`, or the host's default one. Returns once
/// the host has announced that it is ready, with the time the process was
/// spawned (for start-up figures).
pub fn start_host(data: &Path, cache: Option<&Path>, fsync: bool, extra: &[&str]) -> Result<(Host, Instant), AnyError> {
    let started = Instant::now();
    let mut command = Command::new(env!("CARGO_BIN_EXE_twinlattice"));
    command.args(["serve", "--port", "0", "--data-dir"]).arg(data);
    if let Some(cache) = cache {
        command.arg("--cache-dir").arg(cache);
    }
    // The benches' receivers listen on 127.0.0.1, which deliveries may
    // reach only when allowed.
    if !extra.iter().any(|a| a.starts_with("--delivery-allow")) {
        command.args(["--delivery-allow", "127.0.0.0/8"]);
    }
    let mut child = command
        .args(["--fsync", if fsync { "true" } else { "false" }])
        .args(extra)
        .env("TWINLATTICE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let (mut addr, mut coap, mut admin) = (None, None, None);
    // Wait for "ready": by then the MQTT bridge is connected too, so a bench
    // may publish at once.
    for line in lines.by_ref() {
        let line = line?;
        if let Some(url) = line.strip_prefix("twinlattice http listening on http://") {
            addr = Some(url.trim().parse()?);
        } else if let Some(url) = line.strip_prefix("twinlattice coap listening on coap://") {
            coap = Some(url.trim().parse()?);
        } else if let Some(url) = line.strip_prefix("twinlattice admin listening on http://") {
            admin = Some(url.trim().parse()?);
        } else if line.starts_with("twinlattice ready") {
            break;
        }
    }
    // Keep draining stdout so the host never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let addr = addr.ok_or("host exited before listening")?;
    let admin_token = std::fs::read_to_string(data.join("admin.token"))?.trim().to_string();
    Ok((Host { child, addr, coap, admin, admin_token, data: data.to_path_buf() }, started))
}

/// Shell descriptor `i` of the registry benches: its id and JSON text.
pub fn shell_descriptor(i: usize) -> (String, String) {
    use base64::Engine as _;
    let id = format!("https://bench.example.com/ids/aas/{i:08}");
    let body = serde_json::json!({
        "id": id,
        "idShort": format!("Bench{i}"),
        "assetKind": "Instance",
        "globalAssetId": format!("https://bench.example.com/ids/asset/{i:08}"),
        "specificAssetIds": [{"name": "serialNumber", "value": format!("SN-{i:08}")}],
        "endpoints": [{"interface": "AAS-3.0", "protocolInformation": {
            "href": format!("https://repo.bench.example.com/api/v3.0/shells/{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&id)),
            "endpointProtocol": "HTTP", "endpointProtocolVersion": ["1.1"]}}],
    });
    (id, body.to_string())
}

/// A prepared GET request.
pub fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: bench\r\n\r\n").into_bytes()
}

/// A prepared request with `headers` and `body` (Content-Length always set).
/// A request to the host's admin endpoint: a loopback Host and its token.
pub fn admin_request(host: &Host, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let authorization = format!("Bearer {}", host.admin_token);
    let mut all = vec![("authorization", authorization.as_str())];
    all.extend_from_slice(headers);
    raw_request("127.0.0.1", method, path, &all, body)
}

pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    raw_request("bench", method, path, headers, body)
}

fn raw_request(host_header: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nhost: {host_header}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// The request line of a prepared request, for error messages.
fn request_line(request: &[u8]) -> String {
    let end = request.windows(2).position(|w| w == b"\r\n").unwrap_or(request.len());
    String::from_utf8_lossy(&request[..end]).into_owned()
}

/// A minimal HTTP/1.1 keep-alive client for the load phases: it writes a
/// prepared request and reads exactly one response by Content-Length, so
/// the load generator spends as little of the shared CPUs as possible and
/// the figures reflect the servers.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    pub async fn open(addr: SocketAddr) -> Result<RawConn, AnyError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RawConn { stream, buf: Vec::with_capacity(16 * 1024) })
    }

    /// Send `request`; the answer's status (its body is dropped).
    pub async fn send(&mut self, request: &[u8]) -> Result<u16, AnyError> {
        Ok(self.exchange(request, false).await?.0)
    }

    /// Send `request`; the answer's status and body.
    pub async fn call(&mut self, request: &[u8]) -> Result<(u16, Vec<u8>), AnyError> {
        self.exchange(request, true).await
    }

    async fn exchange(&mut self, request: &[u8], keep_body: bool) -> Result<(u16, Vec<u8>), AnyError> {
        self.stream.write_all(request).await?;
        let (head_len, status, body_len) = loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let (status, len) = parse_head(&self.buf[..end])?;
                break (end + 4, status, len);
            }
            self.fill().await?;
        };
        while self.buf.len() < head_len + body_len {
            self.fill().await?;
        }
        let body = if keep_body { self.buf[head_len..head_len + body_len].to_vec() } else { Vec::new() };
        self.buf.drain(..head_len + body_len);
        Ok((status, body))
    }

    async fn fill(&mut self) -> Result<(), AnyError> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err("connection closed".into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// Status and Content-Length of a response head.
fn parse_head(head: &[u8]) -> Result<(u16, usize), AnyError> {
    let head = std::str::from_utf8(head)?;
    let status: u16 = head.get(9..12).ok_or("short status line")?.parse()?;
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok())?
        })
        .ok_or("no content-length")?;
    Ok((status, len))
}

pub struct Stats {
    pub count: usize,
    pub seconds: f64,
    /// Sorted latencies in µs.
    pub micros: Vec<u64>,
}

impl Stats {
    /// The `p` quantile in ms.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.micros.is_empty() {
            return f64::NAN;
        }
        let i = ((self.micros.len() as f64 - 1.0) * p).round() as usize;
        self.micros[i] as f64 / 1000.0
    }
    pub fn mean(&self) -> f64 {
        if self.micros.is_empty() {
            return f64::NAN;
        }
        self.micros.iter().sum::<u64>() as f64 / self.micros.len() as f64 / 1000.0
    }
    pub fn rate(&self) -> f64 {
        self.count as f64 / self.seconds
    }
    /// Both runs as one: counts and times added, latencies pooled.
    pub fn merge(mut self, other: Stats) -> Stats {
        self.count += other.count;
        self.seconds += other.seconds;
        self.micros.extend(other.micros);
        self.micros.sort_unstable();
        self
    }
    pub fn line(&self) -> String {
        format!(
            "{:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  (n={})",
            self.rate(),
            self.percentile(0.50),
            self.percentile(0.99),
            self.percentile(1.0),
            self.count
        )
    }
}

pub fn stats(mut micros: Vec<u64>, seconds: f64) -> Stats {
    micros.sort_unstable();
    Stats { count: micros.len(), seconds, micros }
}

/// Where connection `c` of `conns` starts in a list of `len` requests:
/// spread evenly, so connections do not send the same request together.
fn start_index(c: usize, conns: usize, len: usize) -> usize {
    c * len / conns.max(1)
}

/// Closed loop: `conns` connections, each sending the next of `requests` as
/// soon as the previous is answered, for `secs`. Every answer must have
/// status `expect`.
pub async fn closed_loop(addr: SocketAddr, requests: Arc<Vec<Vec<u8>>>, expect: u16, conns: usize, secs: u64) -> Result<Stats, AnyError> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let requests = requests.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = RawConn::open(addr).await?;
            let mut lat = Vec::new();
            let mut i = start_index(c, conns, requests.len());
            while Instant::now() < deadline {
                let request = &requests[i % requests.len()];
                i += 1;
                let t = Instant::now();
                let status = conn.send(request).await?;
                if status != expect {
                    return Err(format!("{} answered {status}", request_line(request)).into());
                }
                lat.push(t.elapsed().as_micros() as u64);
            }
            Ok::<_, AnyError>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(stats(all, started.elapsed().as_secs_f64()))
}

/// Open loop at `rate` req/s spread over `conns` connections. Returns the
/// latency from sending each request, and from when it was due (which also
/// counts any stall that delayed later sends, and the tokio timer's up to
/// 1 ms lateness, the same for every server).
pub async fn fixed_rate(
    addr: SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    expect: u16,
    rate: u64,
    conns: usize,
    secs: u64,
) -> Result<(Stats, Stats), AnyError> {
    let started = Instant::now();
    let per_conn = Duration::from_secs_f64(conns as f64 / rate as f64);
    let total = rate * secs / conns as u64;
    let mut tasks = Vec::new();
    for c in 0..conns {
        let requests = requests.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = RawConn::open(addr).await?;
            let offset = per_conn.mul_f64(c as f64 / conns as f64);
            let begin = Instant::now() + offset;
            let first = start_index(c, conns, requests.len());
            let mut lat = Vec::new();
            for n in 0..total {
                let due = begin + per_conn * n as u32;
                tokio::time::sleep_until(due.into()).await;
                let request = &requests[(first + n as usize) % requests.len()];
                let sent = Instant::now();
                let status = conn.send(request).await?;
                if status != expect {
                    return Err(format!("{} answered {status}", request_line(request)).into());
                }
                lat.push((sent.elapsed().as_micros() as u64, due.elapsed().as_micros() as u64));
            }
            Ok::<_, AnyError>(lat)
        }));
    }
    let (mut sent, mut due) = (Vec::new(), Vec::new());
    for t in tasks {
        for (s, d) in t.await?? {
            sent.push(s);
            due.push(d);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    Ok((stats(sent, secs), stats(due, secs)))
}

/// A child process killed on drop.
pub struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> Result<u16, AnyError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub fn start_mosquitto(dir: &std::path::Path) -> Result<(Killed, u16), AnyError> {
    let port = free_port()?;
    let conf = dir.join("mosquitto.conf");
    std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 1000\nmax_queued_messages 100000\n"))?;
    let child = Command::new("mosquitto").arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok((Killed(child), port));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err("mosquitto did not start".into())
}
