//! Lattice benchmark: twinlattice on a local wasmCloud v1 lattice against the
//! embedded host, in the same run. Brings up its own lattice with
//! `scripts/lattice.sh` (which must have been set up: `scripts/lattice.sh
//! setup`), deploys wadm.yaml with `wash app deploy`, and prints:
//! - the time from `wash app deploy` to the first answered request;
//! - GET /shell-descriptors/{id}: closed-loop throughput on the lattice and on
//!   the embedded host, the ratio, and latency percentiles of both;
//! - POST /shell-descriptors (writes through the JetStream state provider)
//!   against the embedded host's redb;
//! - the added latency of one component-to-component hop over wRPC/NATS:
//!   GET /description (the gateway alone) against GET /shell-descriptors/{id}
//!   (gateway → registry → keyvalue), each at a fixed rate, p50/p99 of both
//!   and of their difference on the lattice and on the embedded host;
//! - routed I4.0 messages (HTTP sender → gateway → broker → registry, policy
//!   → bridges → HTTP receiver): closed-loop throughput on both, the ratio;
//! - the routing-policy swap on the lattice (`scripts/lattice.sh policy`)
//!   under a steady stream: when the new policy took effect, the longest gap
//!   between deliveries around it, and messages sent against delivered;
//! - site loss: a second host (site=b), the multi-site manifest
//!   (`lattice.sh manifest --sites a,b`), then site b's host stops under GET
//!   traffic through site a: the longest time without an answered request,
//!   the requests that failed, and how long wadm takes to restore site b
//!   when its host returns.
//!
//! Prints figures; asserts nothing. Run with
//! `cargo bench -p twinlattice --bench lattice`. BENCH_SECONDS (default 5).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;
use support::i40::{http_post, http_receiver, message, register_over_http, Sink};
use support::{
    closed_loop, env_num, fixed_rate, get_request, request, shell_descriptor as descriptor, start_host, start_mosquitto, AnyError, RawConn,
    Stats,
};

/// The bench's lattice uses its own ports, beside any other lattice or host.
const LATTICE_HTTP: &str = "127.0.0.1:9421";
const LATTICE_PORTS: [(&str, &str); 5] = [
    ("TWINLATTICE_NATS_PORT", "4422"),
    ("TWINLATTICE_LATTICE_HTTP_PORT", "9421"),
    ("TWINLATTICE_LATTICE_TWINS_PORT", "9422"),
    ("TWINLATTICE_LATTICE_COAP_PORT", "9423"),
    ("TWINLATTICE_LATTICE_MQTT_PORT", "9424"),
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// `scripts/lattice.sh ARGS…` with the bench's own lattice directory.
fn lattice(dir: &Path, args: &[&str]) -> Result<String, AnyError> {
    let out = Command::new(repo_root().join("scripts/lattice.sh"))
        .args(args)
        .env("TWINLATTICE_LATTICE_DIR", dir)
        .envs(LATTICE_PORTS)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "scripts/lattice.sh {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

struct Lattice {
    dir: PathBuf,
}

impl Drop for Lattice {
    fn drop(&mut self) {
        let _ = lattice(&self.dir, &["down", "--wipe"]);
    }
}

/// POST descriptors 0..n one after another on one connection.
async fn load(addr: SocketAddr, n: usize) -> Result<Stats, AnyError> {
    let mut conn = RawConn::open(addr).await?;
    let started = Instant::now();
    let mut micros = Vec::with_capacity(n);
    for i in 0..n {
        let req = request("POST", "/shell-descriptors", &[("content-type", "application/json")], descriptor(i).1.as_bytes());
        let t = Instant::now();
        let status = conn.send(&req).await?;
        if status != 201 && status != 409 {
            return Err(format!("POST answered {status}").into());
        }
        micros.push(t.elapsed().as_micros() as u64);
    }
    Ok(support::stats(micros, started.elapsed().as_secs_f64()))
}

fn hop_line(label: &str, alone: &Stats, chain: &Stats) -> String {
    format!(
        "  {label:<10} gateway alone p50 {:>6.2} ms p99 {:>6.2} ms; gateway→registry→keyvalue p50 {:>6.2} ms p99 {:>6.2} ms; added p50 {:>6.2} ms p99 {:>6.2} ms",
        alone.percentile(0.5), alone.percentile(0.99), chain.percentile(0.5), chain.percentile(0.99),
        chain.percentile(0.5) - alone.percentile(0.5), chain.percentile(0.99) - alone.percentile(0.99)
    )
}

fn main() -> Result<(), AnyError> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(bench())
}

async fn bench() -> Result<(), AnyError> {
    let secs = env_num("BENCH_SECONDS", 5);
    let n = 1_000;
    let scratch = tempfile::tempdir()?;
    println!("twinlattice lattice benchmark ({secs} s per load phase, {} CPUs)", std::thread::available_parallelism()?.get());

    // The lattice: NATS, wadm, one host; then the application.
    let dir = scratch.path().join("lattice");
    let _ = lattice(&dir, &["down", "--wipe"]);
    lattice(&dir, &["up", "site=a"])?;
    let guard = Lattice { dir: dir.clone() };
    let manifest = scratch.path().join("twinlattice.yaml");
    std::fs::write(&manifest, lattice(&dir, &["manifest"])?)?;
    let lattice_addr: SocketAddr = LATTICE_HTTP.parse()?;
    let started = Instant::now();
    lattice(&dir, &["wash", "app", "deploy", manifest.to_str().ok_or("path")?])?;
    let deployed = started.elapsed();
    // The first answer from the gateway alone, then from the whole chain
    // (gateway → registry → JetStream state provider).
    let mut answered = Vec::new();
    for path in ["/description", "/shell-descriptors?limit=1"] {
        loop {
            if let Ok(mut conn) = RawConn::open(lattice_addr).await {
                if let Ok(200) = conn.send(&get_request(path)).await {
                    answered.push(started.elapsed());
                    break;
                }
            }
            if started.elapsed() > Duration::from_secs(120) {
                return Err(format!("the lattice did not answer {path} within 120 s of wash app deploy").into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    println!("\n== wash app deploy to first answered request ==");
    println!(
        "  wash app deploy returned after {:.0} ms; first answer (gateway) after {:.0} ms; first registry answer after {:.0} ms",
        deployed.as_secs_f64() * 1e3, answered[0].as_secs_f64() * 1e3, answered[1].as_secs_f64() * 1e3
    );

    // The embedded host with the lattice's chain of components: the gateway
    // serves the registry's paths and calls the registry (by default the
    // embedded host sends them to the registry's own HTTP face).
    let (host, _) = start_host(&scratch.path().join("embedded"), None, true, &["--http-routes", "twins:twins"])?;
    println!("\n== POST /shell-descriptors, {n} new descriptors, 1 connection ==");
    let l = load(lattice_addr, n).await?;
    println!("  lattice (JetStream state)     {}", l.line());
    let e = load(host.addr, n).await?;
    println!("  embedded (redb, fsync on)     {}", e.line());

    let paths: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..n)
            .map(|i| {
                use base64::Engine as _;
                let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(descriptor(i).0);
                get_request(&format!("/shell-descriptors/{id}"))
            })
            .collect(),
    );
    println!("\n== GET /shell-descriptors/{{id}}, closed loop, 16 connections ==");
    let emb = closed_loop(host.addr, paths.clone(), 200, 16, secs).await?;
    println!("  embedded host                 {}", emb.line());
    let lat = closed_loop(lattice_addr, paths.clone(), 200, 16, secs).await?;
    println!("  lattice (wasmCloud 1.9 host)  {}", lat.line());
    println!("  lattice / embedded: {:.1}%", 100.0 * lat.rate() / emb.rate());

    println!("\n== one component hop, at 200 req/s, 4 connections ==");
    let desc: Arc<Vec<Vec<u8>>> = Arc::new(vec![get_request("/description")]);
    for (label, addr) in [("embedded", host.addr), ("lattice", lattice_addr)] {
        let (alone, _) = fixed_rate(addr, desc.clone(), 200, 200, 4, secs).await?;
        let (chain, _) = fixed_rate(addr, paths.clone(), 200, 200, 4, secs).await?;
        println!("{}", hop_line(label, &alone, &chain));
    }
    println!("  (on the lattice the gateway→registry call and the registry's keyvalue calls cross wRPC over NATS;");
    println!("   on the embedded host they are in-process calls between instances)");

    let t0 = Instant::now();
    let sink = Arc::new(Sink::default());
    let rx_addr = http_receiver(sink.clone(), t0).await?;
    let rx_href = format!("http://{rx_addr}/i40commu");
    println!("\n== routed I4.0 messages (~1 kB), HTTP → broker → HTTP, closed loop, 8 connections ==");
    let mut rates = Vec::new();
    for (label, addr) in [("embedded", host.addr), ("lattice", lattice_addr)] {
        let (sender, receiver) = (format!("urn:bench:{label}:tx"), format!("urn:bench:{label}:rx"));
        register_over_http(addr, &sender, &[]).await?;
        register_over_http(addr, &receiver, &[&rx_href]).await?;
        let messages: Arc<Vec<Vec<u8>>> = Arc::new(
            (0..256)
                .map(|_| request("POST", "/i40commu", &[("content-type", "application/json")], &message(&sender, &receiver, t0)))
                .collect(),
        );
        sink.reset();
        let routed = closed_loop(addr, messages, 202, 8, secs).await?;
        println!("  {label:<28} {}  (receiver got {})", routed.line(), sink.count());
        rates.push(routed.rate());
    }
    println!("  lattice / embedded: {:.1}%", 100.0 * rates[1] / rates[0]);

    println!("\n== routing-policy swap on the lattice, steady stream HTTP → HTTP (1 connection) ==");
    policy_swaps(&dir, lattice_addr, &rx_href, sink.clone(), t0).await?;

    println!("\n== site loss: hosts site=a and site=b; site b's host stops under GET traffic through site a (4 connections) ==");
    site_loss(&dir, scratch.path(), lattice_addr, paths).await?;
    drop(host);
    drop(guard);
    Ok(())
}

/// Which policy routed a message to a receiver whose first endpoint is dead
/// and whose second is live: `preferred` tries only the first (200 with a
/// 502 error message), `failover` falls back (202, delivered).
async fn failover_in_effect(addr: SocketAddr, sender: &str, receiver: &str, t0: Instant) -> Result<bool, AnyError> {
    let (status, body) = http_post(addr, "/i40commu", message(sender, receiver, t0)).await?;
    match status {
        202 => Ok(true),
        200 if String::from_utf8_lossy(&body).contains("502") => Ok(false),
        _ => Err(format!("probe answered {status}: {}", String::from_utf8_lossy(&body)).into()),
    }
}

/// Deploy `policy` and probe every 50 ms (each probe in its own task, as
/// one takes ~0.5 s of delivery retries) until one is routed by it; returns
/// (wash returned, first probe sent after the swap began that the new
/// policy routed), both since `began`.
async fn swap_to(dir: &Path, policy: &str, addr: SocketAddr, probe: (&str, &str), t0: Instant) -> Result<(Duration, Duration), AnyError> {
    let want_failover = policy == "failover";
    let began = Instant::now();
    let (dir_owned, name) = (dir.to_path_buf(), policy.to_string());
    let deploy = tokio::task::spawn_blocking(move || lattice(&dir_owned, &["policy", &name]).map_err(|e| e.to_string()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    let mut deployed = None;
    let mut deploy = Some(deploy);
    loop {
        if let Some(handle) = deploy.take_if(|h| h.is_finished()) {
            handle.await??;
            deployed = Some(began.elapsed());
        }
        if let Ok(at) = rx.try_recv() {
            if let Some(handle) = deploy.take() {
                handle.await??;
                deployed = Some(began.elapsed());
            }
            return Ok((deployed.unwrap_or_default(), at));
        }
        if began.elapsed() > Duration::from_secs(120) {
            return Err(format!("policy {policy} not in effect 120 s after the swap began").into());
        }
        let (tx, sender, receiver) = (tx.clone(), probe.0.to_string(), probe.1.to_string());
        let sent = began.elapsed();
        tokio::spawn(async move {
            if let Ok(failover) = failover_in_effect(addr, &sender, &receiver, t0).await {
                if failover == want_failover {
                    let _ = tx.send(sent);
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn policy_swaps(dir: &Path, addr: SocketAddr, rx_href: &str, sink: Arc<Sink>, t0: Instant) -> Result<(), AnyError> {
    let (sender, receiver, probe_rx) = ("urn:bench:swap:tx", "urn:bench:swap:rx", "urn:bench:swap:dead-first");
    register_over_http(addr, sender, &[]).await?;
    register_over_http(addr, receiver, &[rx_href]).await?;
    // Probes reach a receiver of their own, so the stream's sink counts the stream only.
    let dead = format!("http://127.0.0.1:{}/i40commu", std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port());
    let probe_href = format!("http://{}/i40commu", http_receiver(Arc::new(Sink::default()), t0).await?);
    register_over_http(addr, probe_rx, &[&dead, &probe_href]).await?;
    if failover_in_effect(addr, sender, probe_rx, t0).await? {
        return Err("the lattice does not start on the preferred policy".into());
    }

    // The stream: one connection, one message after another, each counted
    // when the broker accepted it (202).
    sink.reset();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stream = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut conn = RawConn::open(addr).await?;
            let mut accepted = 0usize;
            let mut failed = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let req = request("POST", "/i40commu", &[("content-type", "application/json")], &message(sender, receiver, t0));
                match conn.send(&req).await {
                    Ok(202) => accepted += 1,
                    Ok(_) => failed += 1,
                    Err(_) => {
                        failed += 1;
                        conn = RawConn::open(addr).await?;
                    }
                }
            }
            Ok::<_, AnyError>((accepted, failed))
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    for policy in ["failover", "preferred"] {
        let began_us = t0.elapsed().as_micros() as u64;
        let (deployed, effect) = swap_to(dir, policy, addr, (sender, probe_rx), t0).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let window_end = t0.elapsed().as_micros() as u64;
        println!(
            "  to {policy:<9} wash app deploy returned after {:>6.0} ms; new policy in effect for a message sent {:>6.0} ms after the swap began; \
             longest gap between stream deliveries from the swap to 1 s after: {:>6.1} ms",
            deployed.as_secs_f64() * 1e3, effect.as_secs_f64() * 1e3, sink.max_gap(began_us, window_end)
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (accepted, failed) = stream.await??;
    let delivered = sink.wait_for(accepted, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // late duplicates would show now
    let delivered = delivered.max(sink.count());
    println!("  stream: {accepted} accepted, {failed} refused or failed, {delivered} delivered to the receiver (lost {}, duplicated {})",
        accepted.saturating_sub(delivered), delivered.saturating_sub(accepted));
    Ok(())
}

/// Wait until `addr` answers GET `path` with 200.
async fn until_answered(addr: SocketAddr, path: &str, limit: Duration) -> Result<Duration, AnyError> {
    let started = Instant::now();
    loop {
        if let Ok(mut conn) = RawConn::open(addr).await {
            if let Ok(200) = conn.send(&get_request(path)).await {
                return Ok(started.elapsed());
            }
        }
        if started.elapsed() > limit {
            return Err(format!("{addr} did not answer {path} within {limit:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How one request of the site-loss traffic ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    Ok,
    Failed,
    /// No answer within REQUEST_TIMEOUT: the client gives up.
    Hung,
}

/// Longer than the hosts' RPC timeout (10 s): a request still unanswered
/// then is not going to be.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The longest time without a successful answer in [from, to) (µs since the
/// traffic began), from `from` on.
fn longest_gap(answers: &[(u64, Answer)], from: u64, to: u64) -> f64 {
    let mut marks: Vec<u64> =
        answers.iter().filter(|(at, a)| *a == Answer::Ok && *at >= from && *at < to).map(|(at, _)| *at).collect();
    marks.sort_unstable();
    marks.insert(0, from);
    marks.push(to);
    marks.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0) as f64 / 1000.0
}

async fn site_loss(dir: &Path, scratch: &Path, site_a: SocketAddr, paths: Arc<Vec<Vec<u8>>>) -> Result<(), AnyError> {
    let (_mosquitto, mqtt_port) = start_mosquitto(scratch)?;
    lattice(dir, &["host-up", "site=b"])?;
    let manifest = scratch.join("twinlattice-sites.yaml");
    std::fs::write(&manifest, lattice(dir, &["manifest", "--sites", "a,b", "--mqtt", &format!("127.0.0.1:{mqtt_port}")])?)?;
    let started = Instant::now();
    lattice(dir, &["wash", "app", "deploy", manifest.to_str().ok_or("path")?])?;
    let site_b: SocketAddr = "127.0.0.1:9431".parse()?;
    until_answered(site_b, "/shell-descriptors?limit=1", Duration::from_secs(120)).await?;
    println!("  multi-site version deployed; site b's ingress answered {:.0} ms after wash app deploy began", started.elapsed().as_secs_f64() * 1e3);
    // Let wadm finish placing site b's share before the measurement.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let t0 = Instant::now();
    let answers = Arc::new(std::sync::Mutex::new(Vec::<(u64, Answer)>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4usize {
        let (answers, stop, paths) = (answers.clone(), stop.clone(), paths.clone());
        workers.push(tokio::spawn(async move {
            let mut conn: Option<RawConn> = None;
            let mut i = w;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if conn.is_none() {
                    conn = RawConn::open(site_a).await.ok();
                }
                let outcome = match conn.as_mut() {
                    Some(c) => match tokio::time::timeout(REQUEST_TIMEOUT, c.send(&paths[i % paths.len()])).await {
                        Ok(Ok(200)) => Answer::Ok,
                        Ok(Ok(_)) => Answer::Failed,
                        Ok(Err(_)) => {
                            conn = None;
                            Answer::Failed
                        }
                        Err(_) => {
                            conn = None;
                            Answer::Hung
                        }
                    },
                    None => Answer::Failed,
                };
                i += 4;
                if let Ok(mut a) = answers.lock() {
                    a.push((t0.elapsed().as_micros() as u64, outcome));
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let down_at = t0.elapsed().as_micros() as u64;
    let dir_owned = dir.to_path_buf();
    tokio::task::spawn_blocking(move || lattice(&dir_owned, &["host-down", "site=b"]).map_err(|e| e.to_string())).await??;
    let stopped = t0.elapsed().as_micros() as u64 - down_at;
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.await?;
    }
    let end = t0.elapsed().as_micros() as u64;
    let answers = answers.lock().map(|a| a.clone()).unwrap_or_default();
    let after: Vec<&(u64, Answer)> = answers.iter().filter(|(at, _)| *at >= down_at).collect();
    let count = |kind: Answer| after.iter().filter(|(_, a)| *a == kind).count();
    println!(
        "  before: longest time without an answer {:>7.1} ms (2 s); after the stop began: {:>7.1} ms (8 s and the last requests' end; \
         {} requests: {} failed, {} unanswered after {} s; the host took {:.0} ms to stop)",
        longest_gap(&answers, 0, down_at), longest_gap(&answers, down_at, end), after.len(), count(Answer::Failed),
        count(Answer::Hung), REQUEST_TIMEOUT.as_secs(), stopped as f64 / 1e3
    );

    let back = Instant::now();
    lattice(dir, &["host-up", "site=b"])?;
    let served = until_answered(site_b, "/shell-descriptors?limit=1", Duration::from_secs(120)).await?;
    println!(
        "  site b's host back: started in {:.0} ms; site b served again {:.0} ms after it was started (wadm restored its share)",
        (back.elapsed() - served).as_secs_f64() * 1e3, served.as_secs_f64() * 1e3
    );
    Ok(())
}
