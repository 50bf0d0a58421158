//! I4.0 broker benchmark: routed messages per second and latency through the
//! full path (bridge → broker component → registry → policy component →
//! bridge) for MQTT→MQTT, HTTP→MQTT, MQTT→HTTP and CoAP→MQTT with 1 kB
//! messages, against a baseline in the same run: plain publish→subscribe
//! through the same MQTT broker (mosquitto, started by the bench). Prints
//! figures; asserts nothing. Run with
//! `cargo bench -p twinlattice --bench broker` (needs `mosquitto` on PATH).
//!
//! Environment: BENCH_MESSAGES (default 20000 per MQTT phase).

use bytes::Bytes;
use coap_lite::{CoapOption, ContentFormat, MessageClass, MessageType, Packet, RequestType};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet as MqttPacket, QoS};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpStream, UdpSocket};

mod support;
use support::i40::{http_post, http_receiver, message, post_on, register, Sink};
use support::{start_host, start_mosquitto, AnyError, Host};

/// The broker's host: CoAP and admin on free ports, MQTT bridged to `mqtt_port`.
fn start_broker_host(dir: &std::path::Path, mqtt_port: u16) -> Result<Host, AnyError> {
    let port = mqtt_port.to_string();
    // All CoAP senders of the bench share 127.0.0.1: the per-address rate
    // limit (1,000/s by default) is lifted so the bench measures the inbox.
    let extra = [
        "--coap-port", "0", "--admin-port", "0", "--mqtt-host", "127.0.0.1", "--mqtt-port", port.as_str(),
        "--coap-rate-per-ip", "10000000",
    ];
    let (host, _) = start_host(&dir.join("data"), None, true, &extra)?;
    if host.coap.is_none() || host.admin.is_none() {
        return Err("host announced no CoAP or admin address".into());
    }
    Ok(host)
}

async fn mqtt_client(port: u16, name: &str) -> (AsyncClient, rumqttc::EventLoop) {
    let mut options = MqttOptions::new(format!("bench-{name}-{}", std::process::id()), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(1 << 20, 1 << 20);
    options.set_inflight(200);
    AsyncClient::new(options, 10_000)
}

/// A subscriber feeding `sink`; returns once subscribed.
async fn subscriber(port: u16, topic: &str, sink: Arc<Sink>, t0: Instant) -> Result<AsyncClient, AnyError> {
    let (client, mut events) = mqtt_client(port, &format!("sub-{}", topic.len())).await;
    client.subscribe(topic, QoS::AtLeastOnce).await?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut tx = Some(tx);
        loop {
            match events.poll().await {
                Ok(Event::Incoming(MqttPacket::SubAck(_))) => {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(MqttPacket::Publish(p))) => sink.record(&p.payload, t0),
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    rx.await?;
    Ok(client)
}

async fn publisher(port: u16) -> AsyncClient {
    let (client, mut events) = mqtt_client(port, "pub").await;
    tokio::spawn(async move {
        loop {
            if events.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    client
}

async fn coap_post(socket: &UdpSocket, id: u16, payload: Vec<u8>) -> Result<(), AnyError> {
    let mut packet = Packet::new();
    packet.header.set_version(1);
    packet.header.set_type(MessageType::Confirmable);
    packet.header.code = MessageClass::Request(RequestType::Post);
    packet.header.message_id = id;
    packet.set_token(id.to_be_bytes().to_vec());
    packet.add_option(CoapOption::UriPath, b"i40commu".to_vec());
    packet.set_content_format(ContentFormat::ApplicationJSON);
    packet.payload = payload;
    socket.send(&packet.to_bytes()?).await?;
    let mut buf = vec![0u8; 65_536];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf)).await??;
        if let Ok(answer) = Packet::from_bytes(&buf[..n]) {
            if answer.header.message_id == id {
                return Ok(());
            }
        }
    }
}

fn main() -> Result<(), AnyError> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(bench())
}

async fn bench() -> Result<(), AnyError> {
    let n: usize = std::env::var("BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let dir = tempfile::tempdir()?;
    let (_mosquitto, mqtt_port) = start_mosquitto(dir.path())?;
    let host = start_broker_host(dir.path(), mqtt_port)?;
    let t0 = Instant::now();
    println!("twinlattice broker benchmark: {n} messages of ~1 kB per MQTT phase, mosquitto on :{mqtt_port}");

    let sink = Arc::new(Sink::default());
    let _sub = subscriber(mqtt_port, "urn:bench:rx", sink.clone(), t0).await?;
    let http_sink = Arc::new(Sink::default());
    let http_rx = http_receiver(http_sink.clone(), t0).await?;
    for (id, endpoint) in [("urn:bench:rx", None), ("urn:bench:tx", None), ("urn:bench:http-rx", Some(format!("http://{http_rx}/i40")))] {
        let (status, body) = http_post(host.addr, "/i40commu", register(id, endpoint.as_deref().as_slice()).into_bytes()).await?;
        if status != 200 || !String::from_utf8_lossy(&body).contains("\"S\"") {
            return Err(format!("register {id}: {status} {}", String::from_utf8_lossy(&body)).into());
        }
    }
    let publish = publisher(mqtt_port).await;

    println!("\n== throughput, sender pushing as fast as it can ==");
    // Baseline: straight through mosquitto to the receiver's topic.
    sink.reset();
    let start = t0.elapsed().as_micros() as u64;
    for _ in 0..n {
        publish.publish("urn:bench:rx", QoS::AtLeastOnce, false, message("urn:bench:tx", "urn:bench:rx", t0)).await?;
    }
    sink.wait_for(n, Duration::from_secs(120)).await;
    sink.report("baseline: MQTT publish→subscribe", start, t0);

    // MQTT→MQTT through the broker.
    sink.reset();
    let start = t0.elapsed().as_micros() as u64;
    for _ in 0..n {
        publish.publish("AASpillarbox", QoS::AtLeastOnce, false, message("urn:bench:tx", "urn:bench:rx", t0)).await?;
    }
    sink.wait_for(n, Duration::from_secs(180)).await;
    sink.report("MQTT→MQTT (routed)", start, t0);

    // MQTT→HTTP.
    http_sink.reset();
    let start = t0.elapsed().as_micros() as u64;
    let m = n / 4;
    for _ in 0..m {
        publish.publish("AASpillarbox", QoS::AtLeastOnce, false, message("urn:bench:tx", "urn:bench:http-rx", t0)).await?;
    }
    http_sink.wait_for(m, Duration::from_secs(180)).await;
    http_sink.report("MQTT→HTTP (routed)", start, t0);

    // HTTP→MQTT: 16 keep-alive connections posting to /i40commu.
    sink.reset();
    let start = t0.elapsed().as_micros() as u64;
    let left = Arc::new(AtomicUsize::new(m));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let left = left.clone();
        let addr = host.addr;
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            while left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1)).is_ok() {
                let (status, _) = post_on(&mut sender, "/i40commu", message("urn:bench:tx", "urn:bench:rx", t0)).await?;
                if status != 202 {
                    return Err::<(), AnyError>(format!("POST /i40commu answered {status}").into());
                }
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    sink.wait_for(m, Duration::from_secs(60)).await;
    sink.report("HTTP→MQTT (routed, 16 conns)", start, t0);

    // CoAP→MQTT: 16 clients, one confirmable POST in flight each.
    sink.reset();
    let start = t0.elapsed().as_micros() as u64;
    let left = Arc::new(AtomicUsize::new(m));
    let mut tasks = Vec::new();
    for c in 0..16u16 {
        let left = left.clone();
        let coap = host.coap.ok_or("no CoAP address")?;
        tasks.push(tokio::spawn(async move {
            let socket = UdpSocket::bind("127.0.0.1:0").await?;
            socket.connect(coap).await?;
            let mut id = c.wrapping_mul(4096);
            while left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1)).is_ok() {
                id = id.wrapping_add(1);
                coap_post(&socket, id, message("urn:bench:tx", "urn:bench:rx", t0)).await?;
            }
            Ok::<(), AnyError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    sink.wait_for(m, Duration::from_secs(60)).await;
    sink.report("CoAP→MQTT (routed, 16 clients)", start, t0);

    println!("\n== latency at a fixed rate (half the throughput targets), 3 s each ==");
    for (label, topic, rate) in [
        ("baseline: MQTT at 5,000 msg/s", "urn:bench:rx", 5_000u64),
        ("MQTT→MQTT at 5,000 msg/s", "AASpillarbox", 5_000),
    ] {
        sink.reset();
        let start = t0.elapsed().as_micros() as u64;
        let total = rate * 3;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        let per_tick = rate / 1000;
        let mut sent = 0;
        while sent < total {
            tick.tick().await;
            for _ in 0..per_tick {
                publish.publish(topic, QoS::AtLeastOnce, false, message("urn:bench:tx", "urn:bench:rx", t0)).await?;
            }
            sent += per_tick;
        }
        sink.wait_for(total as usize, Duration::from_secs(30)).await;
        sink.report(label, start, t0);
    }
    // HTTP→MQTT at 2,500 msg/s: 25 connections, one request every 10 ms each.
    sink.reset();
    let start = t0.elapsed().as_micros() as u64;
    let mut tasks = Vec::new();
    for _ in 0..25 {
        let addr = host.addr;
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            for _ in 0..300 {
                tick.tick().await;
                post_on(&mut sender, "/i40commu", message("urn:bench:tx", "urn:bench:rx", t0)).await?;
            }
            Ok::<(), AnyError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    sink.wait_for(7_500, Duration::from_secs(30)).await;
    sink.report("HTTP→MQTT at 2,500 msg/s", start, t0);

    swap_pause(&host, &publish, &sink, t0).await?;
    heartbeats(&host, mqtt_port).await?;
    Ok(())
}

/// PUT a policy to the admin endpoint; returns the host's swap report.
async fn put_policy(admin: SocketAddr, token: &str, name: &str) -> Result<String, AnyError> {
    let dir = std::path::Path::new(env!("CARGO_BIN_EXE_twinlattice")).parent().ok_or("no bin dir")?;
    let wasm = std::fs::read(dir.join("components/policies").join(format!("policy-{name}.wasm")))?;
    let stream = TcpStream::connect(admin).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::put("/admin/policy").header("host", "127.0.0.1").header("authorization", format!("Bearer {token}")).header("x-component-name", format!("policy-{name}")).body(Full::new(Bytes::from(wasm)))?;
    let resp = sender.send_request(req).await?;
    let ok = resp.status().is_success();
    let body = String::from_utf8_lossy(&resp.into_body().collect().await?.to_bytes()).into_owned();
    if ok { Ok(body) } else { Err(format!("swap refused: {body}").into()) }
}

/// MQTT→MQTT at 2,000 msg/s for 4 s with a policy swap in the middle: the
/// longest gap between deliveries around the swap against the longest gap
/// in the same stream without a swap.
async fn swap_pause(host: &Host, publish: &AsyncClient, sink: &Arc<Sink>, t0: Instant) -> Result<(), AnyError> {
    println!("\n== policy swap under a 2,000 msg/s MQTT→MQTT stream ==");
    sink.reset();
    let total = 8_000u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let begin = t0.elapsed().as_micros() as u64;
    let mut swap_at = 0;
    let mut swap = None;
    for i in 0..total / 2 {
        tick.tick().await;
        for _ in 0..2 {
            publish.publish("AASpillarbox", QoS::AtLeastOnce, false, message("urn:bench:tx", "urn:bench:rx", t0)).await?;
        }
        if i == total / 4 {
            // The swap runs beside the stream: the sender must not pause.
            swap_at = t0.elapsed().as_micros() as u64;
            let admin = host.admin.ok_or("no admin address")?;
            let token = host.admin_token.clone();
            swap = Some(tokio::spawn(async move {
                let report = put_policy(admin, &token, "failover").await;
                (report, t0.elapsed().as_micros() as u64)
            }));
        }
    }
    let (report, swap_done) = swap.ok_or("no swap")?.await?;
    let report = report?;
    let got = sink.wait_for(total as usize, Duration::from_secs(30)).await;
    let around = sink.max_gap(swap_at.saturating_sub(100_000), swap_done + 200_000);
    let quiet = sink.max_gap(begin + 100_000, swap_at.saturating_sub(100_000));
    println!("  delivered {got} of {total}; swap request took {:.1} ms; report {report}", (swap_done - swap_at) as f64 / 1000.0);
    println!("  longest delivery gap around the swap {around:.2} ms; without a swap {quiet:.2} ms (target < 50 ms)");
    Ok(())
}

/// 10,000 registered AAS heartbeating every 5 s (2,000 heartbeats/s over
/// MQTT) for 10 s: the host's CPU share.
async fn heartbeats(host: &Host, mqtt_port: u16) -> Result<(), AnyError> {
    const FLEET: usize = 10_000;
    println!("\n== {FLEET} AAS heartbeating every 5 s ==");
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (next, addr) = (next.clone(), host.addr);
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= FLEET {
                    return Ok::<(), AnyError>(());
                }
                let (status, _) = post_on(&mut sender, "/i40commu", register(&format!("urn:bench:fleet:{i}"), &[]).into_bytes()).await?;
                if status != 200 {
                    return Err(format!("register answered {status}").into());
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!("  registered {FLEET} AAS in {:.1} s", started.elapsed().as_secs_f64());
    let publish = publisher(mqtt_port).await;
    let (cpu0, wall0) = (host.cpu_seconds(), Instant::now());
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut i = 0usize;
    while wall0.elapsed() < Duration::from_secs(10) {
        tick.tick().await;
        for _ in 0..2 {
            let id = format!("urn:bench:fleet:{}", i % FLEET);
            i += 1;
            let hb = serde_json::json!({ "frame": { "type": "HeartBeat", "messageId": format!("hb{i}"), "conversationId": "hb",
                "sender": { "identification": { "id": id, "idType": "IRI" } },
                "receiver": { "identification": { "id": "AASpillarbox", "idType": "idShort" } } }, "interactionElements": [] });
            publish.publish("AASpillarbox", QoS::AtLeastOnce, false, hb.to_string().into_bytes()).await?;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (cpu, wall) = (host.cpu_seconds() - cpu0, wall0.elapsed().as_secs_f64());
    println!("  {i} heartbeats in {wall:.1} s ({:.0}/s): host CPU {cpu:.2} s = {:.1}% of one core ({:.1}% of the machine's {} cores)",
        i as f64 / wall, 100.0 * cpu / wall, 100.0 * cpu / wall / std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    Ok(())
}
