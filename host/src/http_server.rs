//! Serves HTTP/1.1 on hyper and hands each request to a fresh instance of
//! the HTTP entry component (`wasi:http/incoming-handler`), instantiated
//! from its pre-linked template in the pooling allocator.

use crate::runtime::Runtime;
use anyhow::{Context, Result};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::sync::Arc;
use tokio::net::TcpListener;
use wasmtime_wasi_http::bindings::http::types::Scheme;
use wasmtime_wasi_http::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView;

/// Accept connections until the task is dropped.
pub async fn serve(runtime: Arc<Runtime>, listener: TcpListener) -> Result<()> {
    runtime.http_entry("/").context("no component exports wasi:http/incoming-handler")?;
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
                async move { Ok::<_, std::convert::Infallible>(handle(runtime, req).await.unwrap_or_else(internal_error)) }
            });
            if let Err(e) = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

async fn handle(runtime: Arc<Runtime>, req: hyper::Request<Incoming>) -> Result<hyper::Response<HyperOutgoingBody>> {
    let permit = runtime.admit().await;
    let path = req.uri().path().to_string();
    let pool = runtime.http_entry(&path).context("no HTTP entry component")?;
    let mut instance = pool.take().await?;
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let req = instance.store.data_mut().new_incoming_request(Scheme::Http, req)?;
    let out = instance.store.data_mut().new_response_outparam(sender)?;
    let task = tokio::spawn(async move {
        instance.proxy.wasi_http_incoming_handler().call_handle(&mut instance.store, req, out).await?;
        if let Some(pool) = runtime.http_entry(&path) {
            pool.give_back(instance);
        }
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
