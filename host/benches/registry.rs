//! Registry benchmark: the full Wasm path of `twinlattice serve` against a
//! baseline raw hyper server that answers the same stored JSON from memory,
//! both loaded over loopback in the same run. Prints figures; asserts
//! nothing. Run with `cargo bench -p twinlattice --bench registry`.
//!
//! Figures:
//! - host cold start to the first answered request (no compiled-code cache,
//!   and with the cache the first start leaves);
//! - POST of new descriptors with fsync on (sequential and concurrent);
//! - GET /shell-descriptors/{id}: closed-loop throughput of both servers
//!   (twinlattice through its typed HTTP entry, and through wasi:http as on
//!   a lattice), the server CPU time per request of both (from /proc), and
//!   latency percentiles of both at a fixed 1,000 req/s (open loop, latency
//!   measured from the scheduled send time), and one Wasm call answering a
//!   constant (GET /description) as the ceiling of any change behind it;
//! - paging 100,000 descriptors with limit=100: time per page, first pages
//!   against last pages.
//!
//! Environment: BENCH_SECONDS (default 5), BENCH_PAGING_TOTAL (100000),
//! BENCH_ONLY=get (only the closed-loop GET phases, for quick comparisons).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1 as client;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

mod support;
use support::{closed_loop, cpu_seconds, env_num, fixed_rate, get_request, shell_descriptor as descriptor, start_host, stats, AnyError, Stats};

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    sender: client::SendRequest<Full<Bytes>>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Conn, AnyError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = client::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Conn { sender })
    }

    async fn send(&mut self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, Bytes), AnyError> {
        self.sender.ready().await?;
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "bench")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }
}

/// The baseline: raw hyper answering stored JSON from a HashMap, in a
/// process of its own (this binary re-run with `--baseline-server FILE`), so
/// that it and the host are loaded alike: a separate server process, the
/// same client, the same loopback.
fn start_baseline(docs: HashMap<String, Bytes>, dir: &std::path::Path) -> Result<(Child, SocketAddr), AnyError> {
    let file = dir.join("baseline-docs.json");
    let as_text: HashMap<&String, String> = docs.iter().map(|(k, v)| (k, String::from_utf8_lossy(v).into_owned())).collect();
    std::fs::write(&file, serde_json::to_vec(&as_text)?)?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--baseline-server")
        .arg(&file)
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let line = BufReader::new(stdout).lines().next().ok_or("baseline exited")??;
    Ok((child, line.trim().parse()?))
}

fn baseline_server(file: &str) -> Result<(), AnyError> {
    let text: HashMap<String, String> = serde_json::from_slice(&std::fs::read(file)?)?;
    let docs: HashMap<String, Bytes> = text.into_iter().map(|(k, v)| (k, Bytes::from(v))).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        println!("{}", listener.local_addr()?);
        serve_baseline(listener, docs).await;
        Ok(())
    })
}

async fn serve_baseline(listener: TcpListener, docs: HashMap<String, Bytes>) {
    let docs = Arc::new(docs);
    {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            let docs = docs.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let docs = docs.clone();
                    async move {
                        let key = req.uri().path().trim_start_matches("/shell-descriptors/");
                        let resp = match docs.get(key) {
                            Some(body) => hyper::Response::builder()
                                .status(200)
                                .header("content-type", "application/json")
                                .body(Full::new(body.clone())),
                            None => hyper::Response::builder().status(404).body(Full::new(Bytes::new())),
                        };
                        resp
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    }
}

async fn wait_first_answer(addr: SocketAddr, started: Instant) -> Result<Duration, AnyError> {
    loop {
        if let Ok(mut conn) = Conn::open(addr).await {
            if let Ok((200, _)) = conn.send("GET", "/description", None).await {
                return Ok(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn post_many(addr: SocketAddr, range: std::ops::Range<usize>, conns: usize) -> Result<Stats, AnyError> {
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(range.start));
    let end = range.end;
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= end {
                    break;
                }
                let (_, body) = descriptor(i);
                let t = Instant::now();
                let (status, answer) = conn.send("POST", "/shell-descriptors", Some(&body)).await?;
                if status != 201 {
                    return Err(format!("POST answered {status}: {}", String::from_utf8_lossy(&answer)).into());
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

fn main() -> Result<(), AnyError> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--baseline-server") {
        return baseline_server(args.get(at + 1).ok_or("--baseline-server FILE")?);
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(bench())
}

/// Host start to first answered request, without and with the
/// compiled-code cache (median of 5 each).
async fn cold_start(root: &std::path::Path) -> Result<(), AnyError> {
    println!("\n== host cold start to first answered request (median of 5) ==");
    for (label, shared_cache) in [("no compiled-code cache", false), ("compiled-code cache warm", true)] {
        let mut times = Vec::new();
        for run in 0..5 {
            let cache = if shared_cache { root.join("cache-shared") } else { root.join(format!("cache-cold-{run}")) };
            if shared_cache && run == 0 {
                let (host, started) = start_host(&root.join("warmup"), Some(&cache), true, &[])?;
                wait_first_answer(host.addr, started).await?;
            }
            let (host, started) = start_host(&root.join(format!("start-{label}-{run}").replace(' ', "-")), Some(&cache), true, &[])?;
            times.push(wait_first_answer(host.addr, started).await?);
        }
        times.sort();
        println!("  {label:<26} median {:>7.1} ms  (min {:.1}, max {:.1})", times[2].as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3, times[4].as_secs_f64() * 1e3);
    }
    Ok(())
}

/// Closed-loop GET rounds, baseline and twinlattice in turn.
const GET_ROUNDS: usize = 3;

async fn bench() -> Result<(), AnyError> {
    let secs = env_num("BENCH_SECONDS", 5);
    let paging_total = env_num("BENCH_PAGING_TOTAL", 100_000) as usize;
    let scratch = tempfile::tempdir()?;
    let root: PathBuf = scratch.path().into();
    let only_get = std::env::var("BENCH_ONLY").is_ok_and(|v| v == "get");
    println!("twinlattice registry benchmark ({} s per load phase, {} CPUs)", secs, std::thread::available_parallelism()?.get());

    // 1. Cold start.
    if !only_get {
        cold_start(&root).await?;
    }

    // 2. POST with fsync on, and GET against the baseline.
    let cache = root.join("cache-shared");
    let (host, _) = start_host(&root.join("data-get"), Some(&cache), true, &[])?;
    if only_get {
        post_many(host.addr, 0..1_000, 8).await?;
    } else {
        println!("\n== POST /shell-descriptors, new descriptors, fsync on ==");
        let seq = post_many(host.addr, 0..500, 1).await?;
        println!("  1 connection     {}", seq.line());
        let conc = post_many(host.addr, 500..2_500, 8).await?;
        println!("  8 connections    {}", conc.line());
    }

    let ids: Vec<String> = (0..1_000).map(|i| descriptor(i).0).collect();
    let mut docs = HashMap::new();
    {
        let mut conn = Conn::open(host.addr).await?;
        for id in &ids {
            let key = B64.encode(id);
            let (status, body) = conn.send("GET", &format!("/shell-descriptors/{key}"), None).await?;
            if status != 200 {
                return Err(format!("preload GET answered {status}").into());
            }
            docs.insert(key, body);
        }
    }
    let (mut baseline_child, baseline) = start_baseline(docs, &root)?;
    let paths: Arc<Vec<Vec<u8>>> =
        Arc::new(ids.iter().map(|id| get_request(&format!("/shell-descriptors/{}", B64.encode(id)))).collect());
    println!("\n== GET /shell-descriptors/{{id}}, closed loop, 16 connections ==");
    // The client shares the 2 CPUs with the server, so besides throughput
    // the server's own CPU time per request is printed: what each server
    // costs, apart from the client and the scheduler.
    // Alternating rounds, so that whatever else the machine does in the
    // meantime weighs on both servers alike; each round's share is printed.
    let (mut base, mut wasm): (Option<Stats>, Option<Stats>) = (None, None);
    let (mut base_cpu, mut wasm_cpu) = (0.0, 0.0);
    for round in 1..=GET_ROUNDS {
        let cpu_before = cpu_seconds(baseline_child.id())?;
        let b = closed_loop(baseline, paths.clone(), 200, 16, secs).await?;
        base_cpu += cpu_seconds(baseline_child.id())? - cpu_before;
        let cpu_before = cpu_seconds(host.pid())?;
        let w = closed_loop(host.addr, paths.clone(), 200, 16, secs).await?;
        wasm_cpu += cpu_seconds(host.pid())? - cpu_before;
        println!("  round {round}: baseline {:.0} req/s, twinlattice {:.0} req/s ({:.1}%)", b.rate(), w.rate(), 100.0 * w.rate() / b.rate());
        base = Some(match base { Some(s) => s.merge(b), None => b });
        wasm = Some(match wasm { Some(s) => s.merge(w), None => w });
    }
    let (base, wasm) = (base.ok_or("no rounds")?, wasm.ok_or("no rounds")?);
    let base_cpu = base_cpu / base.count as f64;
    let wasm_cpu = wasm_cpu / wasm.count as f64;
    println!("  baseline (raw hyper, memory)  {}", base.line());
    println!("  twinlattice (full Wasm path)  {}", wasm.line());
    println!("  throughput ratio: {:.1}% of baseline (target >= 50%)", 100.0 * wasm.rate() / base.rate());
    println!(
        "  server CPU per request: baseline {:.1} µs, twinlattice {:.1} µs ({:.1}%)",
        base_cpu * 1e6,
        wasm_cpu * 1e6,
        100.0 * base_cpu / wasm_cpu
    );
    // Where the time goes: GET /description is one Wasm call answering a
    // constant (no store read), the cost of entering a component at all;
    // its share of the baseline is the ceiling of any change to the
    // registry's own work and the store.
    let description: Arc<Vec<Vec<u8>>> = Arc::new(vec![get_request("/description")]);
    let cpu_before = cpu_seconds(host.pid())?;
    let alone = closed_loop(host.addr, description, 200, 16, secs).await?;
    let alone_cpu = (cpu_seconds(host.pid())? - cpu_before) / alone.count as f64;
    println!("  entry alone, GET /description   {}  (server CPU {:.1} µs per request)", alone.line(), alone_cpu * 1e6);
    println!(
        "  the entry alone does {:.1}% of the baseline; the registry's work and the store read cost {:.1} µs per GET",
        100.0 * alone.rate() / base.rate(),
        1e6 / wasm.rate() - 1e6 / alone.rate()
    );
    if only_get {
        let _ = baseline_child.kill();
        let _ = baseline_child.wait();
        return Ok(());
    }

    println!("\n== GET /shell-descriptors/{{id}} at a fixed 1,000 req/s, 8 connections ==");
    let (base_sent, base_due) = fixed_rate(baseline, paths.clone(), 200, 1_000, 8, secs).await?;
    println!("  baseline, from send           {}", base_sent.line());
    println!("  baseline, from due time       {}", base_due.line());
    let (wasm_sent, wasm_due) = fixed_rate(host.addr, paths.clone(), 200, 1_000, 8, secs).await?;
    println!("  twinlattice, from send        {}  (target p99 < 5 ms)", wasm_sent.line());
    println!("  twinlattice, from due time    {}", wasm_due.line());
    drop(host);

    // The same data through the wasi:http entry, as a lattice's http-server
    // provider enters the gateway.
    println!("\n== GET /shell-descriptors/{{id}} through wasi:http/incoming-handler, closed loop, 16 connections ==");
    let (host, _) = start_host(&root.join("data-get"), Some(&cache), true, &["--http-entry", "wasi-http"])?;
    let wasi = closed_loop(host.addr, paths.clone(), 200, 16, secs).await?;
    println!("  twinlattice (wasi:http entry) {}", wasi.line());
    println!("  throughput ratio: {:.1}% of baseline; the typed entry does {:.2}x", 100.0 * wasi.rate() / base.rate(), wasm.rate() / wasi.rate());
    drop(host);
    let _ = baseline_child.kill();
    let _ = baseline_child.wait();

    // 3. Paging through a large registry. Loaded with fsync off: the figure
    //    measured here is paging, not loading.
    println!("\n== paging {paging_total} descriptors, limit=100 ==");
    let (host, _) = start_host(&root.join("data-paging"), Some(&cache), false, &[])?;
    let load = post_many(host.addr, 0..paging_total, 8).await?;
    println!("  loaded with fsync off         {}", load.line());
    let mut conn = Conn::open(host.addr).await?;
    let mut cursor: Option<String> = None;
    let mut page_ms = Vec::new();
    let mut seen = 0usize;
    loop {
        let path = match &cursor {
            Some(c) => format!("/shell-descriptors?limit=100&cursor={c}"),
            None => "/shell-descriptors?limit=100".to_string(),
        };
        let t = Instant::now();
        let (status, body) = conn.send("GET", &path, None).await?;
        page_ms.push(t.elapsed().as_secs_f64() * 1e3);
        if status != 200 {
            return Err(format!("page answered {status}").into());
        }
        let page: serde_json::Value = serde_json::from_slice(&body)?;
        seen += page["result"].as_array().map_or(0, Vec::len);
        match page["paging_metadata"]["cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let n = page_ms.len();
    let tenth = (n / 10).max(1);
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let first = mean(&page_ms[..tenth]);
    let last = mean(&page_ms[n - tenth..]);
    let mut sorted = page_ms.clone();
    sorted.sort_by(f64::total_cmp);
    println!("  pages {n}, descriptors seen {seen}");
    println!("  first 10% of pages: mean {first:.2} ms; last 10%: mean {last:.2} ms; ratio last/first {:.2} (target within 2x)", last / first);
    println!("  per page: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms", sorted[n / 2], sorted[(n * 99) / 100], sorted[n - 1]);
    Ok(())
}
