//! Fleet benchmark: what the broker's whole-fleet work costs with many large
//! registrations (security review H8, M11; issue "Hardening" item 7). Prints
//! figures; asserts nothing. Run with `cargo bench -p twinlattice --bench fleet`.
//!
//! BENCH_FLEET AAS (default 100,000) register through the HTTP inbox, each
//! with a ~10 kB descriptor (90 specific asset ids of 100 characters) and an
//! HTTP endpoint on the bench's receiver; then:
//! - `GET /status`: time, size of the answer, the host's memory after;
//! - the liveness sweep with that many leases: host CPU per sweep tick while
//!   nothing changes, and `GET /description` latency during the sweeps
//!   against the same requests on a host with an empty registry (baseline);
//! - one broadcast: how long the sender waits, how many receivers got it
//!   (the broker's delivery budget ends a broadcast after 12 s).
//!
//! Environment: BENCH_FLEET (100000), BENCH_SECONDS (10: the idle window for
//! the sweep figures).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

mod support;
use support::i40::{http_post, http_receiver, post_on, Sink};
use support::{env_num, start_host, stats, AnyError, Host};

fn main() -> Result<(), AnyError> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(bench())
}

/// A register message for AAS `i` with a ~10 kB descriptor.
fn big_register(i: usize, href: &str) -> Vec<u8> {
    let id = format!("https://bench.example.com/ids/fleet/{i:08}");
    let asset_ids: Vec<serde_json::Value> = (0..90)
        .map(|k| serde_json::json!({ "name": format!("property{k:02}"), "value": format!("{k:02}-{}", "v".repeat(97)) }))
        .collect();
    serde_json::json!({
        "frame": { "type": "register", "messageId": format!("r{i}"), "conversationId": "r",
            "sender": { "identification": { "id": id, "idType": "IRI" } },
            "receiver": { "identification": { "id": "AASpillarbox", "idType": "idShort" } } },
        "interactionElements": [{ "id": id, "idShort": format!("Fleet{i}"), "specificAssetIds": asset_ids,
            "endpoints": [{ "interface": "communication", "protocolInformation": { "href": href, "endpointProtocol": "http" } }] }],
    })
    .to_string()
    .into_bytes()
}

/// Register AAS `from..to` over `conns` keep-alive connections.
async fn register_fleet(addr: SocketAddr, href: &str, total: usize, conns: usize) -> Result<(), AnyError> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (next, href) = (next.clone(), href.to_string());
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<(), AnyError>(());
                }
                let (status, body) = post_on(&mut sender, "/i40commu", big_register(i, &href)).await?;
                if status != 200 || !body.windows(10).any(|w| w == b"successful") {
                    return Err(format!("register {i}: {status} {}", String::from_utf8_lossy(&body[..body.len().min(300)])).into());
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// `GET path` once on a fresh connection: status, body length, seconds.
async fn get_once(addr: SocketAddr, path: &str) -> Result<(u16, usize, f64), AnyError> {
    use http_body_util::BodyExt;
    let started = Instant::now();
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path).header("host", "bench").body(http_body_util::Empty::<bytes::Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body.len(), started.elapsed().as_secs_f64()))
}

/// `GET /description` every 20 ms for `secs`: latencies in µs.
async fn probe_description(addr: SocketAddr, secs: u64) -> Result<Vec<u64>, AnyError> {
    let mut out = Vec::new();
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        let (status, _, took) = get_once(addr, "/description").await?;
        if status != 200 {
            return Err(format!("/description answered {status}").into());
        }
        out.push((took * 1e6) as u64);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(out)
}

fn start_fleet_host(data: &std::path::Path) -> Result<Host, AnyError> {
    // A day-long lease: no AAS changes state during the bench, so a sweep
    // walks every lease and rewrites nothing.
    Ok(start_host(data, None, false, &["--heartbeat-ttl-secs", "86400"])?.0)
}

async fn bench() -> Result<(), AnyError> {
    let total = env_num("BENCH_FLEET", 100_000) as usize;
    let idle = env_num("BENCH_SECONDS", 10);
    let dir = tempfile::tempdir()?;
    let t0 = Instant::now();
    let sink = Arc::new(Sink::default());
    let receiver = http_receiver(sink.clone(), t0).await?;
    let href = format!("http://{receiver}/i40commu");
    println!("twinlattice fleet benchmark: {total} AAS with ~10 kB descriptors (fsync off), {idle} s idle windows");

    // Baseline: an empty registry (no leases to sweep).
    let empty = start_fleet_host(&dir.path().join("empty"))?;
    let probe = stats(probe_description(empty.addr, idle).await?, idle as f64);
    println!("  baseline: GET /description, empty registry       p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms", probe.percentile(0.5), probe.percentile(0.99), probe.percentile(1.0));
    let cpu0 = empty.cpu_seconds();
    tokio::time::sleep(Duration::from_secs(idle)).await;
    println!("  baseline: host CPU while idle                    {:.3} s in {idle} s", empty.cpu_seconds() - cpu0);
    empty.stop();

    let host = start_fleet_host(&dir.path().join("fleet"))?;
    let started = Instant::now();
    register_fleet(host.addr, &href, total, 8).await?;
    let took = started.elapsed().as_secs_f64();
    println!("  registered {total} AAS in {took:.1} s ({:.0}/s, 8 connections)", total as f64 / took);

    let (status, bytes, took) = get_once(host.addr, "/status").await?;
    let (rss, hwm) = host.memory_kb()?;
    println!("  GET /status: {status}, {:.1} MB in {took:.2} s; host VmRSS {} MB, VmHWM {} MB", bytes as f64 / 1e6, rss / 1024, hwm / 1024);

    let cpu0 = host.cpu_seconds();
    let probe = stats(probe_description(host.addr, idle).await?, idle as f64);
    let cpu = host.cpu_seconds() - cpu0;
    // Sweeps run every 10 s with a day-long lease (half the TTL, at most 10 s).
    let ticks = (idle as f64 / 10.0).max(1.0);
    println!("  GET /description during sweeps of {total} leases  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms", probe.percentile(0.5), probe.percentile(0.99), probe.percentile(1.0));
    println!("  host CPU with {total} leases: {cpu:.3} s in {idle} s (probes included): about {:.3} s per sweep tick", cpu / ticks);

    sink.reset();
    let broadcast = serde_json::json!({
        "frame": { "type": "notification", "messageId": "b1", "conversationId": "b",
            "sender": { "identification": { "id": "https://bench.example.com/ids/fleet/00000000", "idType": "IRI" } } },
        "interactionElements": [],
    });
    let started = Instant::now();
    let (status, _) = http_post(host.addr, "/i40commu", broadcast.to_string().into_bytes()).await?;
    let waited = started.elapsed().as_secs_f64();
    let got = sink.wait_for(total - 1, Duration::from_secs(2)).await;
    println!("  broadcast to {} receivers: answered {status} after {waited:.2} s; {got} delivered (the rest cut by the 12 s delivery budget)", total - 1);
    let (status, _, took) = get_once(host.addr, "/description").await?;
    println!("  GET /description right after: {status} in {:.1} ms", took * 1e3);
    Ok(())
}
