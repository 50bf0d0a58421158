//! Serves HTTP/1.1 on hyper and hands each request to a warm instance of the
//! HTTP entry component that serves its path: one typed
//! `twinlattice:http-face/handler` call with the body read whole, or
//! `wasi:http/incoming-handler` (see `runtime::http_pool::EntryKind`).

use crate::bindings::http_entry::exports::twinlattice::http_face::handler as face;
use crate::bindings::http_entry::HttpEntry;
use crate::runtime::http_pool::{Entry, HttpInstance, HttpPool};
use crate::runtime::state::HostState;
use crate::runtime::Runtime;
use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use wasmtime::Store;
use wasmtime_wasi_http::bindings::http::types::Scheme;
use wasmtime_wasi_http::bindings::Proxy;
use wasmtime_wasi_http::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView;

/// Limits that keep slow or hostile clients from holding what others need.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Largest request body (413 beyond it).
    pub max_body_bytes: usize,
    /// The whole request head must arrive within this, and an idle
    /// keep-alive connection is closed after it.
    pub header_read_timeout: Duration,
    /// The whole body must arrive within this once the head is read (408).
    pub body_read_timeout: Duration,
    /// Open connections from one client address; more are answered 503 and
    /// closed.
    pub max_connections_per_ip: usize,
}

/// Accept connections until the task is dropped.
pub async fn serve(runtime: Arc<Runtime>, listener: TcpListener, limits: HttpLimits) -> Result<()> {
    runtime.http_entry("/").context("no component exports an HTTP entry")?;
    let per_ip = Arc::new(ConnectionCounts::default());
    loop {
        let (mut stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = per_ip.open(peer.ip(), limits.max_connections_per_ip) else {
            tracing::warn!(%peer, limit = limits.max_connections_per_ip, "connection refused: too many from this address");
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(TOO_MANY_CONNECTIONS)).await;
            });
            continue;
        };
        let _ = stream.set_nodelay(true);
        let runtime = runtime.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |req| {
                let runtime = runtime.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(runtime, req, limits).await) }
            });
            // writev(false): answers here are small, and one flat write per
            // answer measured less CPU than a header iovec plus a body iovec.
            // The timer makes the head timeout (which also ends idle
            // keep-alive connections) take effect: without one hyper ignores it.
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .keep_alive(true)
                .writev(false)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// The answer to a connection over the per-address cap, written raw: no
/// request is read from it.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 81\r\n\r\n{\"messages\":[{\"code\":\"503\",\"messageType\":\"Error\",\"text\":\"too many connections\"}]}";

/// Open connections per client address.
#[derive(Default)]
struct ConnectionCounts(std::sync::Mutex<HashMap<IpAddr, usize>>);

/// One open connection; counted until dropped.
struct ConnectionSlot {
    counts: Arc<ConnectionCounts>,
    ip: IpAddr,
}

impl ConnectionCounts {
    fn open(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<ConnectionSlot> {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(ip).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(ConnectionSlot { counts: self.clone(), ip })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Read the body (bounded, with a deadline) before taking an admission
/// slot, so a client that trickles its body holds nothing others need;
/// then admit and call the component.
async fn handle(runtime: Arc<Runtime>, req: hyper::Request<Incoming>, limits: HttpLimits) -> hyper::Response<HyperOutgoingBody> {
    let Some(pool) = runtime.http_entry(req.uri().path()).cloned() else {
        return internal_error(Face::Aas, anyhow::anyhow!("no HTTP entry component"));
    };
    let face = Face::of(pool.name());
    let (parts, body) = req.into_parts();
    // Most GETs have no body: no read, and no timer to arm for one.
    let body = if hyper::body::Body::is_end_stream(&body) {
        face::Body::None
    } else {
        match tokio::time::timeout(limits.body_read_timeout, read_body(&parts.headers, body, limits.max_body_bytes)).await {
            Ok(body) => body,
            Err(_) => {
                tracing::warn!(path = parts.uri.path(), timeout_ms = limits.body_read_timeout.as_millis() as u64, "request body too slow");
                return host_answer(face, hyper::StatusCode::REQUEST_TIMEOUT, "the request body did not arrive in time");
            }
        }
    };
    let permit = runtime.enter().await;
    let answer = async {
        let HttpInstance { store, entry } = pool.take().await?;
        match entry {
            Entry::Typed(entry) => typed(pool.clone(), store, entry, parts, body, permit).await,
            Entry::WasiHttp(proxy) => wasi_http(pool.clone(), store, proxy, parts, body, limits.max_body_bytes, face, permit).await,
        }
    };
    answer.await.unwrap_or_else(|e| internal_error(face, e))
}

/// The typed entry: read the body (bounded), call `handle` once, answer.
async fn typed(
    pool: Arc<HttpPool>,
    mut store: Store<HostState>,
    entry: HttpEntry,
    parts: hyper::http::request::Parts,
    body: face::Body,
    permit: crate::runtime::admission::Ticket,
) -> Result<hyper::Response<HyperOutgoingBody>> {
    let request = face::Request {
        method: method_of(&parts.method),
        target: parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
        headers: header_block(&parts.headers),
        body,
    };
    // The slot is held while the component runs, and freed when it ends;
    // waits on the network or a timer inside step out of it.
    let call = permit.run(async move {
        let response = entry.twinlattice_http_face_handler().call_handle(&mut store, &request).await?;
        pool.give_back(HttpInstance { store, entry: Entry::Typed(entry) });
        anyhow::Ok(response)
    });
    // hyper drops this future when the client goes away. A read may be
    // abandoned midway; a write runs to its end in a task of its own, so a
    // departing client never leaves a write half done.
    let response = if parts.method == hyper::Method::GET || parts.method == hyper::Method::HEAD {
        call.await?
    } else {
        tokio::spawn(call).await.context("component task failed")??
    };
    into_hyper(response)
}

fn method_of(method: &hyper::Method) -> face::Method {
    match *method {
        hyper::Method::GET => face::Method::Get,
        hyper::Method::HEAD => face::Method::Head,
        hyper::Method::POST => face::Method::Post,
        hyper::Method::PUT => face::Method::Put,
        hyper::Method::DELETE => face::Method::Delete,
        hyper::Method::PATCH => face::Method::Patch,
        hyper::Method::OPTIONS => face::Method::Options,
        ref other => face::Method::Other(other.as_str().to_string()),
    }
}

/// The headers as `http-face`'s one block of `name: value\n` lines.
fn header_block(headers: &hyper::HeaderMap) -> String {
    let mut block = String::with_capacity(headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 3).sum());
    for (name, value) in headers {
        block.push_str(name.as_str());
        block.push_str(": ");
        match value.to_str() {
            Ok(text) => block.push_str(text),
            Err(_) => block.push_str(&String::from_utf8_lossy(value.as_bytes())),
        }
        block.push('\n');
    }
    block
}

/// The body whole, or why not: over the limit (by its declared length, or
/// once more than the limit arrived), or broken off.
async fn read_body(headers: &hyper::HeaderMap, body: Incoming, limit: usize) -> face::Body {
    // Most GETs: no body at all, nothing to collect.
    if hyper::body::Body::is_end_stream(&body) {
        return face::Body::None;
    }
    let declared = headers.get(hyper::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return face::Body::TooLarge(limit as u64);
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => face::Body::Complete(collected.to_bytes().to_vec()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => face::Body::TooLarge(limit as u64),
        Err(e) => {
            tracing::debug!(error = %e, "request body broke off");
            face::Body::Unreadable
        }
    }
}

fn into_hyper(response: face::Response) -> Result<hyper::Response<HyperOutgoingBody>> {
    const INVALID: &str = "the component answered with an invalid status or header";
    let mut headers = hyper::HeaderMap::new();
    for line in response.headers.lines() {
        let (name, value) = line.split_once(':').context(INVALID)?;
        let name = hyper::header::HeaderName::from_bytes(name.as_bytes()).context(INVALID)?;
        let value = hyper::header::HeaderValue::from_str(value.strip_prefix(' ').unwrap_or(value)).context(INVALID)?;
        headers.append(name, value);
    }
    let body = Full::new(Bytes::from(response.body)).map_err(|never| match never {}).boxed();
    let mut answer = hyper::Response::new(body);
    *answer.status_mut() = hyper::StatusCode::from_u16(response.status).context(INVALID)?;
    *answer.headers_mut() = headers;
    Ok(answer)
}

/// The wasi:http entry: the guest gets the request and a response outparam
/// as resources and may go on running after it set the response.
#[allow(clippy::too_many_arguments)] // the parts of one request, taken apart once
async fn wasi_http(
    pool: Arc<HttpPool>,
    mut store: Store<HostState>,
    proxy: Proxy,
    parts: hyper::http::request::Parts,
    body: face::Body,
    max_body_bytes: usize,
    face: Face,
    permit: crate::runtime::admission::Ticket,
) -> Result<hyper::Response<HyperOutgoingBody>> {
    // The body was read before admission; the guest reads it again from
    // memory. One past the limit stands for a body that was too large, so
    // the guest answers it as it answers any over-long body.
    let bytes = match body {
        face::Body::None => Bytes::new(),
        face::Body::Complete(bytes) => Bytes::from(bytes),
        face::Body::TooLarge(_) => Bytes::from(vec![0u8; max_body_bytes + 1]),
        // The client broke off: answer as the guest answers a body it cannot
        // read (the typed entry's `unreadable`), without calling it.
        face::Body::Unreadable => {
            pool.give_back(HttpInstance { store, entry: Entry::WasiHttp(proxy) });
            drop(permit);
            return Ok(host_answer(face, hyper::StatusCode::BAD_REQUEST, "the body could not be read"));
        }
    };
    let body = Full::new(bytes).map_err(|never| match never {}).boxed();
    let req = hyper::Request::from_parts(parts, body);
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let req = store.data_mut().new_incoming_request(Scheme::Http, req)?;
    let out = store.data_mut().new_response_outparam(sender)?;
    let task = tokio::spawn(permit.run(async move {
        proxy.wasi_http_incoming_handler().call_handle(&mut store, req, out).await?;
        pool.give_back(HttpInstance { store, entry: Entry::WasiHttp(proxy) });
        anyhow::Ok(())
    }));
    match receiver.await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(code)) => Err(anyhow::anyhow!("component answered with an error: {code:?}")),
        Err(_) => {
            // The component returned without setting a response: find out why.
            let why = match task.await {
                Ok(Ok(())) => anyhow::anyhow!("component set no response"),
                Ok(Err(e)) => e.context("component trapped"),
                Err(e) => anyhow::anyhow!("component task failed: {e}"),
            };
            tracing::error!(error = ?why, "request failed");
            Err(why)
        }
    }
}

/// Which API's error body an answer made by the host carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Face {
    /// The twin API (the component named `twins`): Trusted Twin's
    /// `{"subcode","trace","description","help"}`, so its client reads it.
    TrustedTwin,
    /// Everything else (registry, gateway, broker inbox): the AAS `Result`.
    Aas,
}

impl Face {
    fn of(component: &str) -> Face {
        if component == "twins" {
            Face::TrustedTwin
        } else {
            Face::Aas
        }
    }
}

/// An answer the host makes itself, in `face`'s error format.
fn host_answer(face: Face, status: hyper::StatusCode, text: &str) -> hyper::Response<HyperOutgoingBody> {
    let body = match face {
        Face::Aas => serde_json::json!({ "messages": [{
            "code": status.as_str(), "messageType": if status.is_server_error() { "Exception" } else { "Error" }, "text": text,
        }]}),
        Face::TrustedTwin => serde_json::json!({
            "subcode": u32::from(status.as_u16()) * 1000, "trace": trace_id(), "description": text, "help": null,
        }),
    };
    let body = Full::new(Bytes::from(body.to_string())).map_err(|never| match never {}).boxed();
    let mut response = hyper::Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
    if status == hyper::StatusCode::REQUEST_TIMEOUT {
        response.headers_mut().insert("connection", hyper::header::HeaderValue::from_static("close"));
    }
    response
}

/// A random id for a Trusted Twin error body's `trace`.
fn trace_id() -> String {
    let mut bytes = [0u8; 16];
    let _ = getrandom::fill(&mut bytes);
    hex::encode(bytes)
}

/// A failure of the host or a component trap: 500, or 503 for a call that
/// ran past its deadline (`--call-deadline-ms`). Expected errors never get
/// here; components answer those themselves.
fn internal_error(face: Face, e: anyhow::Error) -> hyper::Response<HyperOutgoingBody> {
    if crate::runtime::engine::is_deadline(&e) {
        tracing::warn!("request stopped at its deadline");
        return host_answer(face, hyper::StatusCode::SERVICE_UNAVAILABLE, "the request ran past its deadline");
    }
    tracing::error!(error = ?e, "internal error");
    host_answer(face, hyper::StatusCode::INTERNAL_SERVER_ERROR, "internal error; see the host's log")
}
