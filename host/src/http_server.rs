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
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::net::TcpListener;
use wasmtime::Store;
use wasmtime_wasi_http::bindings::http::types::Scheme;
use wasmtime_wasi_http::bindings::Proxy;
use wasmtime_wasi_http::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView;

/// Accept connections until the task is dropped. `max_body_bytes` bounds
/// what the typed entry reads of a request body.
pub async fn serve(runtime: Arc<Runtime>, listener: TcpListener, max_body_bytes: usize) -> Result<()> {
    runtime.http_entry("/").context("no component exports an HTTP entry")?;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let runtime = runtime.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let runtime = runtime.clone();
                async move {
                    let answer = handle(runtime, req, max_body_bytes).await;
                    Ok::<_, std::convert::Infallible>(answer.unwrap_or_else(internal_error))
                }
            });
            // writev(false): answers here are small, and one flat write per
            // answer measured less CPU than a header iovec plus a body iovec.
            let conn = http1::Builder::new().keep_alive(true).writev(false).serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

async fn handle(runtime: Arc<Runtime>, req: hyper::Request<Incoming>, max_body_bytes: usize) -> Result<hyper::Response<HyperOutgoingBody>> {
    let permit = runtime.admit().await;
    let pool = runtime.http_entry(req.uri().path()).context("no HTTP entry component")?.clone();
    let HttpInstance { store, entry } = pool.take().await?;
    match entry {
        Entry::Typed(entry) => typed(pool, store, entry, req, max_body_bytes, permit).await,
        Entry::WasiHttp(proxy) => wasi_http(pool, store, proxy, req, permit).await,
    }
}

/// The typed entry: read the body (bounded), call `handle` once, answer.
async fn typed(
    pool: Arc<HttpPool>,
    mut store: Store<HostState>,
    entry: HttpEntry,
    req: hyper::Request<Incoming>,
    max_body_bytes: usize,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<hyper::Response<HyperOutgoingBody>> {
    let (parts, body) = req.into_parts();
    let request = face::Request {
        method: method_of(&parts.method),
        target: parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
        headers: header_block(&parts.headers),
        body: read_body(&parts.headers, body, max_body_bytes).await,
    };
    let call = async move {
        let response = entry.twinlattice_http_face_handler().call_handle(&mut store, &request).await?;
        pool.give_back(HttpInstance { store, entry: Entry::Typed(entry) });
        drop(permit);
        anyhow::Ok(response)
    };
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
async fn wasi_http(
    pool: Arc<HttpPool>,
    mut store: Store<HostState>,
    proxy: Proxy,
    req: hyper::Request<Incoming>,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<hyper::Response<HyperOutgoingBody>> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let req = store.data_mut().new_incoming_request(Scheme::Http, req)?;
    let out = store.data_mut().new_response_outparam(sender)?;
    let task = tokio::spawn(async move {
        proxy.wasi_http_incoming_handler().call_handle(&mut store, req, out).await?;
        pool.give_back(HttpInstance { store, entry: Entry::WasiHttp(proxy) });
        drop(permit);
        anyhow::Ok(())
    });
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

/// A failure of the host or a component trap: 500 with the AAS error body.
/// Expected errors never get here; components answer those themselves.
fn internal_error(e: anyhow::Error) -> hyper::Response<HyperOutgoingBody> {
    tracing::error!(error = ?e, "internal error");
    let body = serde_json::json!({ "messages": [{
        "code": "500", "messageType": "Exception", "text": "internal error; see the host's log",
    }]});
    let body = Full::new(Bytes::from(body.to_string())).map_err(|never| match never {}).boxed();
    let mut response = hyper::Response::new(body);
    *response.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
    response.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
    response
}
