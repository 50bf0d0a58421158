//! I4.0 traffic for the broker benches: ~1 kB messages whose messageId
//! carries the send time, register messages, HTTP posting, a receiver
//! `Sink` (count, latencies, arrival gaps) and a tiny HTTP AAS feeding it.

use super::AnyError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

pub const PADDING: usize = 780;

/// A ~1 kB I4.0 message from `sender` to `receiver`; the messageId carries
/// the send time (µs since `t0`) for latency.
pub fn message(sender: &str, receiver: &str, t0: Instant) -> Vec<u8> {
    let sent = t0.elapsed().as_micros();
    serde_json::json!({
        "frame": {
            "type": "bench", "messageId": format!("m{sent}"), "conversationId": "bench",
            "sender": { "identification": { "id": sender, "idType": "IRI" } },
            "receiver": { "identification": { "id": receiver, "idType": "IRI" } },
        },
        "interactionElements": [{ "idShort": "Payload", "value": "x".repeat(PADDING) }],
    })
    .to_string()
    .into_bytes()
}

/// A register message for `id` with HTTP communication endpoints `hrefs`, in
/// order (none: only a REST endpoint, so the broker falls back to MQTT).
pub fn register(id: &str, hrefs: &[&str]) -> String {
    let endpoints: Vec<serde_json::Value> = if hrefs.is_empty() {
        vec![serde_json::json!({ "interface": "AAS-3.0", "protocolInformation": { "href": "http://unused.invalid/" } })]
    } else {
        hrefs
            .iter()
            .map(|href| serde_json::json!({ "interface": "communication", "protocolInformation": { "href": href, "endpointProtocol": "http" } }))
            .collect()
    };
    serde_json::json!({
        "frame": { "type": "register", "messageId": "r", "conversationId": "r",
            "sender": { "identification": { "id": id, "idType": "IRI" } },
            "receiver": { "identification": { "id": "AASpillarbox", "idType": "idShort" } } },
        "interactionElements": [{ "id": id, "endpoints": endpoints }],
    })
    .to_string()
}

/// Register `id` over HTTP at `addr`'s `/i40commu`; the broker must answer 200.
pub async fn register_over_http(addr: SocketAddr, id: &str, hrefs: &[&str]) -> Result<(), AnyError> {
    let (status, body) = http_post(addr, "/i40commu", register(id, hrefs).into_bytes()).await?;
    if status != 200 {
        return Err(format!("register {id} answered {status}: {}", String::from_utf8_lossy(&body)).into());
    }
    Ok(())
}

pub async fn http_post(addr: SocketAddr, path: &str, body: Vec<u8>) -> Result<(u16, Bytes), AnyError> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    post_on(&mut sender, path, body).await
}

pub async fn post_on(sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>, path: &str, body: Vec<u8>) -> Result<(u16, Bytes), AnyError> {
    sender.ready().await?;
    let req = hyper::Request::post(path).header("host", "bench").header("content-type", "application/json").body(Full::new(Bytes::from(body)))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    Ok((status, resp.into_body().collect().await?.to_bytes()))
}

/// Received-message counter with latencies and arrival times.
#[derive(Default)]
pub struct Sink {
    pub count: AtomicUsize,
    pub latencies: Mutex<Vec<u64>>,
    pub arrivals: Mutex<Vec<u64>>,
    pub last_us: AtomicU64,
}

impl Sink {
    pub fn record(&self, payload: &[u8], t0: Instant) {
        let now = t0.elapsed().as_micros() as u64;
        let sent = serde_json::from_slice::<serde_json::Value>(payload)
            .ok()
            .and_then(|v| v["frame"]["messageId"].as_str().and_then(|m| m.strip_prefix('m')).and_then(|n| n.parse::<u64>().ok()));
        if let Some(sent) = sent {
            if let Ok(mut l) = self.latencies.lock() {
                l.push(now.saturating_sub(sent));
            }
        }
        if let Ok(mut a) = self.arrivals.lock() {
            a.push(now);
        }
        self.last_us.store(now, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
    pub fn reset(&self) {
        self.count.store(0, Ordering::Relaxed);
        if let Ok(mut l) = self.latencies.lock() {
            l.clear();
        }
        if let Ok(mut a) = self.arrivals.lock() {
            a.clear();
        }
    }
    /// The longest gap between two arrivals within [from, to) µs.
    pub fn max_gap(&self, from: u64, to: u64) -> f64 {
        let mut a: Vec<u64> = self.arrivals.lock().map(|a| a.iter().copied().filter(|t| *t >= from && *t < to).collect()).unwrap_or_default();
        a.sort_unstable();
        a.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0) as f64 / 1000.0
    }
    pub async fn wait_for(&self, n: usize, limit: Duration) -> usize {
        let until = Instant::now() + limit;
        while self.count.load(Ordering::Relaxed) < n && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.count.load(Ordering::Relaxed)
    }
    pub fn report(&self, label: &str, started_us: u64, t0: Instant) {
        let n = self.count.load(Ordering::Relaxed);
        let secs = (self.last_us.load(Ordering::Relaxed).saturating_sub(started_us)) as f64 / 1e6;
        let mut l = self.latencies.lock().map(|l| l.clone()).unwrap_or_default();
        l.sort_unstable();
        let p = |q: f64| if l.is_empty() { f64::NAN } else { l[((l.len() - 1) as f64 * q) as usize] as f64 / 1000.0 };
        let _ = t0;
        println!("  {label:<34} {:>8.0} msg/s  p50 {:>7.2} ms  p99 {:>7.2} ms  (received {n})", n as f64 / secs.max(1e-9), p(0.5), p(0.99));
    }
}

/// A tiny HTTP AAS: counts POSTs into `sink`.
pub async fn http_receiver(sink: Arc<Sink>, t0: Instant) -> Result<SocketAddr, AnyError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let sink = sink.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let sink = sink.clone();
                    async move {
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        sink.record(&body, t0);
                        hyper::Response::builder().status(204).body(Full::new(Bytes::new()))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(addr)
}

