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
//!   and of their difference on the lattice and on the embedded host.
//!
//! Prints figures; asserts nothing. Run with
//! `cargo bench -p twinlattice --bench lattice`. BENCH_SECONDS (default 5).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;
use support::{closed_loop, env_num, fixed_rate, get_request, request, shell_descriptor as descriptor, start_host, AnyError, RawConn, Stats};

/// The bench's lattice uses its own ports, beside any other lattice or host.
const LATTICE_HTTP: &str = "127.0.0.1:9421";
const LATTICE_PORTS: [(&str, &str); 3] = [
    ("TWINLATTICE_NATS_PORT", "4422"),
    ("TWINLATTICE_LATTICE_HTTP_PORT", "9421"),
    ("TWINLATTICE_LATTICE_TWINS_PORT", "9422"),
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

    let (host, _) = start_host(&scratch.path().join("embedded"), None, true, &[])?;
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
    drop(host);
    drop(guard);
    Ok(())
}
