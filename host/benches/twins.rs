//! Twin API benchmark: the full Wasm path of `twinlattice serve` (gateway
//! component → twins component → redb store) for the hot ledger calls,
//! against a baseline raw hyper server doing the same JSON work on the same
//! store type; history reads at two history sizes; and value reads at two
//! registry sizes. Prints figures; asserts nothing. Run with
//! `cargo bench -p twinlattice --bench twins`.
//!
//! Figures:
//! - A. `PATCH`/`GET /twins/{t}/ledgers/personal/value`, fsync on: closed-loop
//!   throughput of both servers and their ratio, and latency at a fixed
//!   1,000 req/s;
//! - B. `GET …/history?limit=100` on an entry with BENCH_HISTORY values
//!   against one with 10;
//! - C. `GET …/value` over random twins after 1,000 and after BENCH_TWINS
//!   twins, with the host's memory and the data directory's size.
//!
//! Environment: BENCH_SECONDS (default 5), BENCH_TWINS (1000000),
//! BENCH_HISTORY (100000).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;

mod support;
use support::{admin_request, closed_loop, env_num, fixed_rate, request, start_host, AnyError, Host, RawConn, Stats};

/// The host's own store, so the baseline pays for the same storage.
#[path = "../src/capabilities/kv_store.rs"]
#[allow(dead_code, unused_imports)]
mod kv_store;
use kv_store::KvStore;

/// The twins component's bucket (table `bucket:twins`) and store file.
const BUCKET: &str = "twins";
const STORE_FILE: &str = "twinlattice.redb";

/// Distinct PATCH values per load phase; connections start spread over the
/// list, so consecutive writes to the entry always change its value.
const PATCH_VALUES: u64 = 50_000;

fn main() -> Result<(), AnyError> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--baseline-server") {
        let ids = args.get(at + 1..at + 7).ok_or("--baseline-server DIR SECRET ACCOUNT USER ROLE TWIN")?;
        return baseline::serve(ids);
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(bench())
}

async fn bench() -> Result<(), AnyError> {
    let secs = env_num("BENCH_SECONDS", 5);
    let twins = env_num("BENCH_TWINS", 1_000_000) as usize;
    let history = env_num("BENCH_HISTORY", 100_000) as usize;
    let scratch = tempfile::tempdir()?;
    let root: PathBuf = scratch.path().into();
    println!(
        "twinlattice twins benchmark ({secs} s per load phase, {} CPUs; BENCH_TWINS={twins}, BENCH_HISTORY={history})",
        std::thread::available_parallelism()?.get()
    );
    hot_paths(&root, secs).await?;
    history_reads(&root, secs, history).await?;
    scale(&root, secs, twins).await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Talking to the twin API.

/// Ports the bench does not use are picked free, so hosts can run side by side.
const FREE_PORTS: [&str; 6] = ["--admin-port", "0", "--coap-port", "0", "--mqtt-port", "0"];

fn start(data: &Path, fsync: bool) -> Result<Host, AnyError> {
    Ok(start_host(data, None, fsync, &FREE_PORTS)?.0)
}

/// What `twinlattice account create` prints.
#[derive(serde::Deserialize, Clone)]
struct Account {
    account: String,
    user: String,
    role: String,
    secret: String,
}

fn create_account(host: &Host) -> Result<Account, AnyError> {
    let admin = host.admin.ok_or("host announced no admin address")?;
    let out = Command::new(env!("CARGO_BIN_EXE_twinlattice"))
        .args(["account", "create", "--admin", &format!("http://{admin}")])
        .arg("--admin-token-file")
        .arg(host.data.join("admin.token"))
        .env("TWINLATTICE_LOG", "warn")
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("account create failed: {}", String::from_utf8_lossy(&out.stdout)).into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// A request of the twin API, authenticated as `secret`.
fn api(method: &str, path: &str, secret: &str, body: &Value) -> Vec<u8> {
    let headers = [("authorization", secret), ("content-type", "application/json")];
    let body = if body.is_null() { Vec::new() } else { body.to_string().into_bytes() };
    request(method, path, &headers, &body)
}

/// Send `req` and parse the answer, which must have status `expect`.
async fn call(conn: &mut RawConn, req: &[u8], expect: u16) -> Result<Value, AnyError> {
    let (status, body) = conn.call(req).await?;
    if status != expect {
        return Err(format!("answered {status} (expected {expect}): {}", String::from_utf8_lossy(&body)).into());
    }
    Ok(serde_json::from_slice(&body)?)
}

async fn create_twin(conn: &mut RawConn, secret: &str) -> Result<String, AnyError> {
    let answer = call(conn, &api("POST", "/twins", secret, &json!({"description": {"application": "bench"}})), 201).await?;
    Ok(answer["creation_certificate"]["uuid"].as_str().ok_or("no twin uuid in the answer")?.to_string())
}

async fn add_entries(conn: &mut RawConn, secret: &str, twin: &str, entries: Value) -> Result<(), AnyError> {
    let path = format!("/twins/{twin}/ledgers/personal");
    call(conn, &api("POST", &path, secret, &json!({ "entries": entries })), 201).await?;
    Ok(())
}

fn value_path(twin: &str) -> String {
    format!("/twins/{twin}/ledgers/personal/value")
}

/// `n` PATCHes of entry `entry`, values `base..base + n`.
fn patch_requests(twin: &str, secret: &str, entry: &str, base: u64, n: u64) -> Arc<Vec<Vec<u8>>> {
    let path = value_path(twin);
    Arc::new((base..base + n).map(|v| api("PATCH", &path, secret, &json!({"entries": {entry: {"value": v}}}))).collect())
}

fn latency_line(s: &Stats) -> String {
    format!("p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  (n={})", s.percentile(0.5), s.percentile(0.99), s.percentile(1.0), s.count)
}

fn ratio_line(label: &str, host: &Stats, base: &Stats) -> String {
    format!("  {label}: twinlattice at {:.1}% of baseline (target >= 50%)", 100.0 * host.rate() / base.rate())
}

// ---------------------------------------------------------------------------
// A. Hot paths against the baseline.

async fn hot_paths(root: &Path, secs: u64) -> Result<(), AnyError> {
    let host = start(&root.join("data-hot"), true)?;
    let acct = create_account(&host)?;
    let mut conn = RawConn::open(host.addr).await?;
    let twin = create_twin(&mut conn, &acct.secret).await?;
    add_entries(&mut conn, &acct.secret, &twin, json!({"reading": {"value": 0, "history": "INF", "visibility": "true"}})).await?;
    let (mut baseline_child, baseline) = start_baseline(root, &acct, &twin)?;
    let servers = [("baseline   ", baseline), ("twinlattice", host.addr)];

    println!("\n== A. PATCH/GET /twins/{{t}}/ledgers/personal/value, fsync on ==");
    println!("  baseline: raw hyper in its own process, the host's redb store (fsync on), the same records and JSON work");
    let gets = Arc::new(vec![api("GET", &value_path(&twin), &acct.secret, &Value::Null)]);
    let phases: [(&str, u64, usize); 3] = [("PATCH, 1 connection ", 1, 1), ("PATCH, 8 connections", 2, 8), ("GET,   8 connections", 0, 8)];
    let mut ratios = Vec::new();
    println!("closed loop:");
    for (label, value_base, conns) in phases {
        // Each PATCH phase has values of its own, so no write repeats the
        // value before it; both servers get the same requests.
        let requests = if value_base == 0 { gets.clone() } else { patch_requests(&twin, &acct.secret, "reading", value_base * 1_000_000, PATCH_VALUES) };
        let mut figures = Vec::new();
        for (name, addr) in servers {
            let s = closed_loop(addr, requests.clone(), 200, conns, secs).await?;
            println!("  {label}  {name}  {}", s.line());
            figures.push(s);
        }
        ratios.push(ratio_line(label, &figures[1], &figures[0]));
    }
    for r in &ratios {
        println!("{r}");
    }

    println!("open loop at 1,000 req/s, 8 connections, {secs} s (latency from the scheduled send time; target p99 < 5 ms):");
    let patches = patch_requests(&twin, &acct.secret, "reading", 3_000_000, PATCH_VALUES);
    for (label, requests) in [("PATCH", patches), ("GET  ", gets)] {
        for (name, addr) in servers {
            let (sent, due) = fixed_rate(addr, requests.clone(), 200, 1_000, 8, secs).await?;
            println!("  {label}  {name}  from due time  {}", latency_line(&due));
            println!("  {label}  {name}  from send      {}", latency_line(&sent));
        }
    }
    let _ = baseline_child.kill();
    let _ = baseline_child.wait();
    Ok(())
}

/// The baseline, this binary re-run with `--baseline-server`, in a process
/// of its own so that it and the host are loaded alike. It seeds its own
/// store with the host's ids, so the same prepared requests fit both.
fn start_baseline(root: &Path, acct: &Account, twin: &str) -> Result<(Child, SocketAddr), AnyError> {
    let dir = root.join("data-baseline");
    std::fs::create_dir_all(&dir)?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--baseline-server")
        .arg(&dir)
        .args([&acct.secret, &acct.account, &acct.user, &acct.role, twin])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let line = BufReader::new(stdout).lines().next().ok_or("baseline exited")??;
    Ok((child, line.trim().parse()?))
}

// ---------------------------------------------------------------------------
// B. History reads.

async fn history_reads(root: &Path, secs: u64, values: usize) -> Result<(), AnyError> {
    println!("\n== B. GET /twins/{{t}}/ledgers/personal/history?limit=100: {values} values against 10 ==");
    let data = root.join("data-history");
    let host = start(&data, false)?;
    let acct = create_account(&host)?;
    let mut conn = RawConn::open(host.addr).await?;
    let twin = create_twin(&mut conn, &acct.secret).await?;
    let spec = json!({"value": 0, "history": "INF", "visibility": "true"});
    add_entries(&mut conn, &acct.secret, &twin, json!({"big": spec, "small": spec})).await?;
    drop(conn);
    let host = seed_history(host, &data, &acct, &twin, values).await?;

    // The newest values one at a time, 2 ms apart: the answer is keyed by
    // millisecond timestamp, so values written within one millisecond
    // collapse into one item (see the note printed above).
    let mut conn = RawConn::open(host.addr).await?;
    for (entry, n) in [("big", 100u64), ("small", 9)] {
        for v in 0..n {
            let path = value_path(&twin);
            call(&mut conn, &api("PATCH", &path, &acct.secret, &json!({"entries": {entry: {"value": 10_000_000 + v}}})), 200).await?;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let mut figures = Vec::new();
    for (entry, expected) in [("big", 100usize), ("small", 10)] {
        let path = format!("/twins/{twin}/ledgers/personal/history?entries={entry}&limit=100");
        let req = api("GET", &path, &acct.secret, &Value::Null);
        let answer = call(&mut conn, &req, 200).await?;
        let held = answer["entries"][entry].as_object().map_or(0, |o| o.len());
        let verdict = if held == expected { "as expected" } else { "NOT as expected" };
        println!("  entries={entry:<5} answer holds {held} values ({verdict}: {expected})");
        figures.push(closed_loop(host.addr, Arc::new(vec![req]), 200, 1, secs).await?);
    }
    for (label, s) in ["big  ", "small"].iter().zip(&figures) {
        println!("  entries={label} 1 connection  mean {:>6.2} ms  {}", s.mean(), s.line());
    }
    let (big, small) = (&figures[0], &figures[1]);
    println!("  big/small: mean {:.2}x  p50 {:.2}x  p99 {:.2}x (target <= 2x)",
        big.mean() / small.mean(), big.percentile(0.5) / small.percentile(0.5), big.percentile(0.99) / small.percentile(0.99));
    Ok(())
}

/// Write `values` values into entry `big`, over 4 connections on a host
/// with fsync off (the figure is the read, not the seeding). Concurrent
/// PATCHes of one entry are last-writer-wins, and so are the history items
/// they append, so the history's length is read from the store (with the
/// host stopped) and topped up until it holds `values`. Returns a host
/// restarted with fsync on, for the measurement.
async fn seed_history(mut host: Host, data: &Path, acct: &Account, twin: &str, values: usize) -> Result<Host, AnyError> {
    let started = Instant::now();
    let (mut held, mut sent, mut round) = (1u64, 0u64, 0u64);
    let mut yield_rate = 1.0f64;
    while held < values as u64 && round < 8 {
        round += 1;
        let want = ((values as u64 - held) as f64 / yield_rate).ceil() as u64;
        let requests = patch_requests(twin, &acct.secret, "big", round * 1_000_000_000, want);
        let rate = send_all(host.addr, requests, 4).await?;
        sent += want;
        host.stop();
        let before = held;
        held = history_length(data, twin, &acct.account, "big")?;
        yield_rate = ((held - before) as f64 / want as f64).clamp(0.05, 1.0);
        println!("  seeding round {round}: {want} PATCHes over 4 connections at {rate:.0} req/s (fsync off); history now {held} values");
        host = start(data, false)?;
    }
    println!("  seeded: big holds {held} values from {sent} PATCHes + 1 at creation, in {:.1} s; concurrent PATCHes of one entry lost {} history items",
        started.elapsed().as_secs_f64(), (sent + 1).saturating_sub(held));
    note_same_millisecond(&host, acct, twin).await?;
    host.stop();
    println!("  host restarted with fsync on for the reads; the newest 100 values of big and 9 of small written 2 ms apart");
    start(data, true)
}

/// Before the spaced writes: how many values a limit=100 read of `big`
/// holds when its newest values were written several per millisecond.
async fn note_same_millisecond(host: &Host, acct: &Account, twin: &str) -> Result<(), AnyError> {
    let mut conn = RawConn::open(host.addr).await?;
    let req = api("GET", &format!("/twins/{twin}/ledgers/personal/history?entries=big&limit=100"), &acct.secret, &Value::Null);
    let t = Instant::now();
    let answer = call(&mut conn, &req, 200).await?;
    let took = t.elapsed().as_secs_f64() * 1e3;
    let held = answer["entries"]["big"].as_object().map_or(0, |o| o.len());
    println!("  note: right after the bulk seeding (several values per ms) a limit=100 read holds {held} values (one per distinct ms) and took {took:.2} ms");
    Ok(())
}

/// The stored history length (`hnext`) of `entry`, read from the store file
/// of a stopped host.
fn history_length(data: &Path, twin: &str, account: &str, entry: &str) -> Result<u64, AnyError> {
    let store = KvStore::open(&data.join(STORE_FILE), false)?;
    let raw = store.get(BUCKET, &format!("l:{twin}:{account}"))?.ok_or("no ledger record")?;
    let ledger: Value = serde_json::from_slice(&raw)?;
    Ok(ledger["entries"][entry]["hnext"].as_u64().ok_or("no hnext")?)
}

/// Send every request once over `conns` connections; the rate achieved.
async fn send_all(addr: SocketAddr, requests: Arc<Vec<Vec<u8>>>, conns: usize) -> Result<f64, AnyError> {
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (next, requests) = (next.clone(), requests.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = RawConn::open(addr).await?;
            while let Some(req) = requests.get(next.fetch_add(1, Ordering::Relaxed)) {
                let status = conn.send(req).await?;
                if status != 200 {
                    return Err::<(), AnyError>(format!("seeding PATCH answered {status}").into());
                }
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(requests.len() as f64 / started.elapsed().as_secs_f64())
}

// ---------------------------------------------------------------------------
// C. Value reads as the number of twins grows.

async fn scale(root: &Path, secs: u64, total: usize) -> Result<(), AnyError> {
    println!("\n== C. GET /twins/{{t}}/ledgers/personal/value over random twins (10 entries each), 1,000 twins against {total} ==");
    let data = root.join("data-scale");
    let host = start(&data, false)?;
    let acct = create_account(&host)?;
    let mut twins = Vec::with_capacity(total);
    let small = total.min(1_000);
    twins.extend(load_twins(&host, &acct.account, 0, small).await?);
    host.stop();
    let at_small = measure_reads(&data, &acct, &twins, secs).await?;
    if total > small {
        let host = start(&data, false)?;
        twins.extend(load_twins(&host, &acct.account, small, total - small).await?);
        let (rss, hwm) = host.memory_kb()?;
        println!("  loading host after the load: VmRSS {} MB  VmHWM {} MB", rss / 1024, hwm / 1024);
        host.stop();
        let at_total = measure_reads(&data, &acct, &twins, secs).await?;
        println!("  {total}/1,000 twins: closed loop mean {:.2}x  p50 {:.2}x  p99 {:.2}x; open loop p50 {:.2}x  p99 {:.2}x (target <= 2x)",
            at_total.0.mean() / at_small.0.mean(),
            at_total.0.percentile(0.5) / at_small.0.percentile(0.5),
            at_total.0.percentile(0.99) / at_small.0.percentile(0.99),
            at_total.1.percentile(0.5) / at_small.1.percentile(0.5),
            at_total.1.percentile(0.99) / at_small.1.percentile(0.99));
    }
    Ok(())
}

/// Create `n` twins with 10 entries each through the admin endpoint's bulk
/// loader (10,000 per store transaction, fsync off), `before` twins being
/// there already (for the progress lines); returns their ids. Going through
/// the API instead (POST twin + POST ledger) runs at about 750 twins/s here,
/// too slow for a million.
async fn load_twins(host: &Host, account: &str, before: usize, n: usize) -> Result<Vec<String>, AnyError> {
    let started = Instant::now();
    let admin = host.admin.ok_or("host announced no admin address")?;
    let mut conn = RawConn::open(admin).await?;
    let mut ids: Vec<String> = Vec::with_capacity(n);
    while ids.len() < n {
        let count = (n - ids.len()).min(10_000);
        let body = json!({"account": account, "count": count, "entries": 10}).to_string();
        let req = admin_request(host, "POST", "/admin/bulk-twins", &[("content-type", "application/json")], body.as_bytes());
        let made: Vec<String> = serde_json::from_value(call(&mut conn, &req, 200).await?)?;
        ids.extend(made);
        if (before + ids.len()) % 100_000 == 0 {
            println!("    … {} twins, {:.0} twins/s so far", before + ids.len(), ids.len() as f64 / started.elapsed().as_secs_f64());
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!("  loaded {} twins (10 entries each, bulk loader, fsync off) in {secs:.1} s: {:.0} twins/s", ids.len(), ids.len() as f64 / secs);
    Ok(ids)
}

/// Restart the host on `data` with fsync on and time value reads of random
/// twins among `twins`: closed loop on 1 connection, then 1,000 req/s.
/// Prints the figures, memory and disk size; returns both latency sets.
async fn measure_reads(data: &Path, acct: &Account, twins: &[String], secs: u64) -> Result<(Stats, Stats), AnyError> {
    let host = start(data, true)?;
    let mut rng = SplitMix(0x5eed_0000 + twins.len() as u64);
    let sample: Vec<Vec<u8>> = (0..20_000)
        .map(|_| api("GET", &value_path(&twins[rng.below(twins.len())]), &acct.secret, &Value::Null))
        .collect();
    let sample = Arc::new(sample);
    let closed = closed_loop(host.addr, sample.clone(), 200, 1, secs).await?;
    let (open_sent, open) = fixed_rate(host.addr, sample, 200, 1_000, 8, secs).await?;
    let (rss, hwm) = host.memory_kb()?;
    let (apparent, allocated) = disk_usage(data)?;
    println!("  {} twins (host restarted with fsync on):", twins.len());
    println!("    closed loop, 1 connection  mean {:>6.2} ms  {}", closed.mean(), closed.line());
    println!("    open loop, 1,000 req/s, 8 connections, from due time  {}", latency_line(&open));
    println!("    open loop, 1,000 req/s, 8 connections, from send      {}", latency_line(&open_sent));
    println!("    host memory VmRSS {:.1} MB  VmHWM {:.1} MB; data directory {:.1} MB apparent, {:.1} MB on disk",
        rss as f64 / 1024.0, hwm as f64 / 1024.0, apparent as f64 / 1e6, allocated as f64 / 1e6);
    Ok((closed, open))
}

/// Apparent and allocated bytes of the files under `dir`.
fn disk_usage(dir: &Path) -> Result<(u64, u64), AnyError> {
    use std::os::unix::fs::MetadataExt;
    let (mut apparent, mut allocated) = (0, 0);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            let (a, b) = disk_usage(&entry.path())?;
            apparent += a;
            allocated += b;
        } else {
            apparent += meta.len();
            allocated += meta.blocks() * 512;
        }
    }
    Ok((apparent, allocated))
}

/// A small deterministic generator for picking twins (no `rand` needed).
struct SplitMix(u64);

impl SplitMix {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

// ---------------------------------------------------------------------------
// The baseline server.

mod baseline {
    //! Raw hyper answering `PATCH`/`GET /twins/{t}/ledgers/personal/value`
    //! with the twins component's work done natively: the same records (the
    //! shapes of `components/twins/src/model.rs`), the same store calls, the
    //! same JSON parsing and serializing. Left out: the Wasm boundary and
    //! the rule engine (the Super Admin's `twin_rule`/`entry_rule` "true"
    //! are not evaluated; ownership is checked instead).

    use super::*;
    use serde::{Deserialize, Serialize};
    use std::collections::BTreeMap;

    #[derive(Serialize, Deserialize)]
    struct SecretRecord {
        account: String,
        user: String,
        role: String,
        hash: String,
        fingerprint: String,
        validity: Option<i64>,
        created: i64,
        updated: i64,
    }

    #[derive(Serialize, Deserialize)]
    struct User {
        uuid: String,
        account: String,
        role: String,
        name: String,
        description: Option<serde_json::Map<String, Value>>,
        activity: Option<Value>,
        created: i64,
        updated: i64,
    }

    #[derive(Serialize, Deserialize)]
    struct Statement {
        effect: String,
        actions: Option<Vec<String>>,
    }

    impl Statement {
        fn allows(&self, action: &str) -> bool {
            let listed = self.actions.as_ref().is_some_and(|a| a.iter().any(|x| x == action));
            match (self.effect.as_str(), &self.actions) {
                ("allow", _) => listed,
                (_, None) => true,
                (_, Some(_)) => !listed,
            }
        }
    }

    #[derive(Serialize, Deserialize)]
    struct Role {
        uuid: String,
        account: String,
        name: String,
        statement: Statement,
        twin_rule: Option<String>,
        entry_rule: Option<String>,
        identity_rule: Option<String>,
        keys: String,
        created: i64,
        updated: i64,
    }

    #[derive(Serialize, Deserialize)]
    struct Twin {
        uuid: String,
        owner: String,
        creator: String,
        description: Option<serde_json::Map<String, Value>>,
        created: i64,
        updated: i64,
        terminated: Option<Value>,
    }

    #[derive(Serialize, Deserialize, Clone, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum EntryKind {
        Value { value: Value },
        Reference { source: String },
        Include { source: String },
    }

    #[derive(Serialize, Deserialize, Clone)]
    struct Entry {
        kind: EntryKind,
        visibility: Option<String>,
        history: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeseries: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        publish: Option<Value>,
        created: i64,
        updated: i64,
        changed: i64,
        #[serde(default)]
        hnext: u64,
        #[serde(default)]
        hlow: u64,
    }

    /// The component keeps insertion order (IndexMap); with one entry the
    /// order is moot.
    #[derive(Serialize, Deserialize, Default)]
    struct Ledger {
        entries: BTreeMap<String, Entry>,
    }

    /// As in `history.rs`: expired values are looked for every this many appends.
    const CHUNK: u64 = 32;
    const QUOTA_BYTES: usize = 64 * 1024;

    fn now_ms() -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
    }

    fn secret_hash(secret: &str) -> String {
        hex::encode(Sha256::digest(secret.as_bytes()))
    }

    fn history_key(t: &str, a: &str, entry: &str, seq: u64) -> String {
        format!("h:{t}:{a}:{entry}:{seq:012}")
    }

    struct Server {
        store: KvStore,
    }

    type Answer = (u16, Vec<u8>);

    /// `--baseline-server DIR SECRET ACCOUNT USER ROLE TWIN`: seed, print
    /// the address, serve.
    pub fn serve(args: &[String]) -> Result<(), AnyError> {
        let [dir, secret, account, user, role, twin] = args else { return Err("six arguments expected".into()) };
        let store = KvStore::open(&Path::new(dir).join("baseline.redb"), true)?;
        seed(&store, secret, account, user, role, twin)?;
        let server = Arc::new(Server { store });
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        runtime.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            println!("{}", listener.local_addr()?);
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let _ = stream.set_nodelay(true);
                let server = server.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let server = server.clone();
                        async move { Ok::<_, std::convert::Infallible>(respond(server.handle(req).await)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        })
    }

    fn respond(answer: Result<Answer, AnyError>) -> hyper::Response<Full<Bytes>> {
        let (status, body) = answer.unwrap_or_else(|e| (500, json!({"description": e.to_string()}).to_string().into_bytes()));
        let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
        response.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
        response
    }

    fn error(status: u16, description: &str) -> Answer {
        (status, json!({"subcode": status as u32 * 1000, "description": description}).to_string().into_bytes())
    }

    /// The records `account create`, `POST /twins` and the ledger POST
    /// leave, in the component's shapes.
    fn seed(store: &KvStore, secret: &str, account: &str, user: &str, role: &str, twin: &str) -> Result<(), AnyError> {
        let now = now_ms();
        let hash = secret_hash(secret);
        let records = [
            (format!("s:{hash}"), serde_json::to_vec(&SecretRecord {
                account: account.into(), user: user.into(), role: role.into(), hash: hash.clone(),
                fingerprint: secret[secret.len().saturating_sub(4)..].into(), validity: None, created: now, updated: now,
            })?),
            (format!("u:{user}"), serde_json::to_vec(&User {
                uuid: user.into(), account: account.into(), role: role.into(), name: "Super Admin".into(),
                description: None, activity: None, created: now, updated: now,
            })?),
            (format!("r:{role}"), serde_json::to_vec(&Role {
                uuid: role.into(), account: account.into(), name: "Super Admin".into(),
                statement: Statement { effect: "deny".into(), actions: Some(Vec::new()) },
                twin_rule: Some("true".into()), entry_rule: Some("true".into()), identity_rule: Some("true".into()),
                keys: "Suffixed".into(), created: now, updated: now,
            })?),
            (format!("t:{twin}"), serde_json::to_vec(&Twin {
                uuid: twin.into(), owner: account.into(), creator: account.into(),
                description: Some(json!({"application": "bench"}).as_object().cloned().unwrap_or_default()),
                created: now, updated: now, terminated: None,
            })?),
            (format!("l:{twin}:{account}"), serde_json::to_vec(&Ledger {
                entries: BTreeMap::from([("reading".to_string(), Entry {
                    kind: EntryKind::Value { value: json!(0) }, visibility: Some("true".into()), history: Some("INF".into()),
                    timeseries: None, publish: None, created: now, updated: now, changed: now, hnext: 1, hlow: 0,
                })]),
            })?),
            (history_key(twin, account, "reading", 0), {
                let mut chunk = now.to_le_bytes().to_vec();
                chunk.extend_from_slice(&1u32.to_le_bytes());
                chunk.extend_from_slice(b"0");
                chunk
            }),
        ];
        store.write(BUCKET, &records, &[])?;
        Ok(())
    }

    /// The authenticated caller: account and role.
    struct Caller {
        account: String,
        role: Role,
    }

    impl Server {
        async fn handle(&self, req: hyper::Request<hyper::body::Incoming>) -> Result<Answer, AnyError> {
            let segments: Vec<String> = req.uri().path().trim_matches('/').split('/').map(str::to_string).collect();
            let ["twins", twin, "ledgers", "personal", "value"] = segments.iter().map(String::as_str).collect::<Vec<_>>()[..] else {
                return Ok(error(404, "Endpoint not found."));
            };
            let twin = twin.to_string();
            let authorization = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
            let patch = req.method() == hyper::Method::PATCH;
            let body = req.into_body().collect().await?.to_bytes();
            let action = if patch { "update_twin_ledger_entry_value" } else { "get_twin_ledger_entry_value" };
            let caller = match self.authenticate(authorization.as_deref(), action)? {
                Ok(c) => c,
                Err(answer) => return Ok(answer),
            };
            if patch {
                self.update(&caller, &twin, &body)
            } else {
                self.get(&caller, &twin)
            }
        }

        /// Secret → secret record → user and role in one call → statement.
        fn authenticate(&self, authorization: Option<&str>, action: &str) -> Result<Result<Caller, Answer>, AnyError> {
            let Some(secret) = authorization.map(str::trim).filter(|s| !s.is_empty()) else { return Ok(Err(error(401, "Unauthorized."))) };
            let Some(raw) = self.store.get(BUCKET, &format!("s:{}", secret_hash(secret)))? else { return Ok(Err(error(401, "Unauthorized."))) };
            let record: SecretRecord = serde_json::from_slice(&raw)?;
            if record.validity.is_some_and(|v| v <= now_ms()) {
                return Ok(Err(error(401, "Unauthorized.")));
            }
            let found = self.store.get_many(BUCKET, &[format!("u:{}", record.user), format!("r:{}", record.role)])?;
            let (Some(user), Some(role)) = (found[0].as_deref(), found[1].as_deref()) else { return Ok(Err(error(401, "Unauthorized."))) };
            let user: User = serde_json::from_slice(user)?;
            let role: Role = serde_json::from_slice(role)?;
            if role.uuid != user.role {
                return Ok(Err(error(401, "Unauthorized.")));
            }
            if !role.statement.allows(action) {
                return Ok(Err(error(403, "Action not allowed.")));
            }
            Ok(Ok(Caller { account: record.account, role }))
        }

        /// The twin (must be the caller's) and the caller's ledger on it.
        fn load(&self, c: &Caller, twin: &str) -> Result<Option<(Twin, Ledger)>, AnyError> {
            let found = self.store.get_many(BUCKET, &[format!("t:{twin}"), format!("l:{twin}:{}", c.account)])?;
            let Some(raw) = found[0].as_deref() else { return Ok(None) };
            let t: Twin = serde_json::from_slice(raw)?;
            if t.owner != c.account && c.role.twin_rule.is_none() {
                return Ok(None);
            }
            let ledger = match found[1].as_deref() {
                Some(raw) => serde_json::from_slice(raw)?,
                None => Ledger::default(),
            };
            Ok(Some((t, ledger)))
        }

        fn get(&self, c: &Caller, twin: &str) -> Result<Answer, AnyError> {
            let Some((_, ledger)) = self.load(c, twin)? else { return Ok(error(404, "Twin not found.")) };
            let names: Vec<&String> = ledger.entries.keys().collect();
            Ok((200, render(&ledger, &names)?))
        }

        fn update(&self, c: &Caller, twin: &str, body: &[u8]) -> Result<Answer, AnyError> {
            let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(body) else { return Ok(error(400, "Body is not a JSON object.")) };
            let Some(Value::Object(specs)) = body.get("entries") else { return Ok(error(400, "'entries' is required.")) };
            let Some((t, mut ledger)) = self.load(c, twin)? else { return Ok(error(404, "Twin not found.")) };
            let now = now_ms();
            let mut sets = Vec::new();
            let mut names = Vec::new();
            for (name, spec) in specs {
                let Some(new_value) = spec.get("value") else { return Ok(error(400, "'value' is required.")) };
                let Some(entry) = ledger.entries.get_mut(name) else { return Ok(error(404, "Entry not found.")) };
                let EntryKind::Value { value } = &mut entry.kind else { return Ok(error(400, "Not a value entry.")) };
                if value != new_value {
                    *value = new_value.clone();
                    entry.changed = now;
                    self.record(&mut sets, &t.uuid, &c.account, name, entry, now)?;
                }
                entry.updated = now;
                names.push(name.clone());
            }
            let bytes = serde_json::to_vec(&ledger)?;
            if bytes.len() > QUOTA_BYTES {
                return Ok(error(400, "The Ledger would exceed the 64 kB quota."));
            }
            sets.push((format!("l:{}:{}", t.uuid, c.account), bytes));
            self.store.write(BUCKET, &sets, &[])?;
            let names: Vec<&String> = names.iter().collect();
            Ok((200, render(&ledger, &names)?))
        }

        /// Append the value to the history as the component does: values in
        /// chunks of CHUNK per record (8-byte time, 4-byte length, JSON), the
        /// newest chunk read and rewritten; a new chunk reads the oldest one,
        /// as pruning does (nothing expires under "INF").
        fn record(&self, sets: &mut Vec<(String, Vec<u8>)>, t: &str, a: &str, name: &str, entry: &mut Entry, now: i64) -> Result<(), AnyError> {
            let (Some(_), EntryKind::Value { value }) = (&entry.history, &entry.kind) else { return Ok(()) };
            let seq = entry.hnext;
            let key = history_key(t, a, name, seq / CHUNK);
            let mut chunk = if seq % CHUNK == 0 { Vec::new() } else { self.store.get(BUCKET, &key)?.unwrap_or_default() };
            let json = serde_json::to_vec(value)?;
            chunk.extend_from_slice(&now.to_le_bytes());
            chunk.extend_from_slice(&(json.len() as u32).to_le_bytes());
            chunk.extend_from_slice(&json);
            sets.push((key, chunk));
            entry.hnext += 1;
            if seq % CHUNK == 0 && seq > 0 {
                let _oldest = self.store.get(BUCKET, &history_key(t, a, name, entry.hlow / CHUNK))?;
            }
            Ok(())
        }
    }

    /// `{"entries": {name: {value, entry_created_ts, entry_updated_ts, value_changed_ts}}}`.
    fn render(ledger: &Ledger, names: &[&String]) -> Result<Vec<u8>, AnyError> {
        let ts = |ms: i64| ms as f64 / 1000.0;
        let mut out = serde_json::Map::new();
        for name in names {
            let Some(e) = ledger.entries.get(*name) else { continue };
            let value = match &e.kind {
                EntryKind::Value { value } => value.clone(),
                _ => Value::Null,
            };
            out.insert((*name).clone(), json!({
                "value": value,
                "entry_created_ts": ts(e.created),
                "entry_updated_ts": ts(e.updated),
                "value_changed_ts": ts(e.changed),
            }));
        }
        Ok(serde_json::to_vec(&json!({ "entries": out }))?)
    }
}
