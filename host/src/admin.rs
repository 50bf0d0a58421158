//! The admin endpoint, bound to 127.0.0.1 only. Every request needs the
//! token `serve` writes to `<data-dir>/admin.token`, a loopback `Host` and no
//! `Origin` (see `admin_auth`):
//!
//! - `GET /admin/components` — the loaded components, as JSON;
//! - `PUT /admin/components` — body: a component (.wasm); header
//!   `x-component-name`: its name. Replaces the running component that
//!   exports the same project interfaces (`Runtime::swap`); 200 with the
//!   swap report, 400 with `{"error"}` when it cannot replace anything;
//! - `PUT /admin/policy` — the same for a routing policy only: the
//!   component must export `twinlattice:routing/policy`;
//! - `POST /admin/accounts` — body `{"name"}` optional: create a twin API
//!   account (`twinlattice account create`);
//! - `POST /admin/demo` — seed the tutorial's demo data (`twinlattice demo seed`);
//! - `POST /admin/bulk-twins` — body `{"account","count","entries"}`: create
//!   twins in bulk for benchmarks and capacity tests; answers their UUIDs.

use crate::admin_auth::AdminToken;
use crate::runtime::Runtime;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::net::TcpListener;

use wasmtime::component::Val;

fn admin_answer(r: anyhow::Result<Result<serde_json::Value, String>>) -> Response<Full<Bytes>> {
    match r {
        Ok(Ok(v)) => json(StatusCode::OK, v),
        Ok(Err(e)) => json(StatusCode::BAD_REQUEST, serde_json::json!({ "error": e })),
        Err(e) => json(StatusCode::INTERNAL_SERVER_ERROR, serde_json::json!({ "error": format!("{e:#}") })),
    }
}

const POLICY: &str = "twinlattice:routing/policy@0.1.0";

/// Largest component accepted.
const MAX_COMPONENT_BYTES: usize = 64 << 20;

pub async fn serve(runtime: Arc<Runtime>, listener: TcpListener, token: Arc<AdminToken>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let runtime = runtime.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let runtime = runtime.clone();
                let token = token.clone();
                async move {
                    let answer = match token.admit(req.headers()) {
                        Ok(()) => handle(&runtime, req).await,
                        Err(refusal) => {
                            tracing::warn!(reason = %refusal, "admin request refused");
                            let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::FORBIDDEN);
                            json(status, serde_json::json!({ "error": refusal.to_string() }))
                        }
                    };
                    Ok::<_, std::convert::Infallible>(answer)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
    response
}

async fn handle(runtime: &Runtime, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/admin/components") => json(StatusCode::OK, serde_json::json!({ "components": runtime.components() })),
        (&Method::PUT, path @ ("/admin/components" | "/admin/policy")) => {
            let required = (path == "/admin/policy").then_some(POLICY);
            let name = req
                .headers()
                .get("x-component-name")
                .and_then(|v| v.to_str().ok())
                .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
                .unwrap_or("swapped")
                .to_string();
            let body = match Limited::new(req.into_body(), MAX_COMPONENT_BYTES).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return json(StatusCode::BAD_REQUEST, serde_json::json!({ "error": format!("cannot read the component: {e}") })),
            };
            match runtime.swap(&name, &body, required).await {
                Ok(report) => json(StatusCode::OK, serde_json::to_value(report).unwrap_or_default()),
                Err(e) => json(StatusCode::BAD_REQUEST, serde_json::json!({ "error": format!("{e:#}") })),
            }
        }
        (&Method::POST, "/admin/accounts") => {
            let body = Limited::new(req.into_body(), 64 * 1024).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let name = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("name").and_then(|n| n.as_str()).map(str::to_string));
            let params = [Val::Option(name.map(|n| Box::new(Val::String(n))))];
            admin_answer(crate::commands::account::call_admin(runtime, "create-account", &params).await)
        }
        (&Method::POST, "/admin/bulk-twins") => {
            let body = Limited::new(req.into_body(), 64 * 1024).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let text = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_string();
            let num = |k: &str| v.get(k).and_then(|x| x.as_u64()).and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
            let params = [Val::String(text("account")), Val::U32(num("count")), Val::U32(num("entries"))];
            admin_answer(crate::commands::account::call_admin(runtime, "bulk-twins", &params).await)
        }
        (&Method::POST, "/admin/demo") => admin_answer(crate::commands::account::call_admin(runtime, "seed-demo", &[]).await),
        (_, "/admin/components" | "/admin/policy") => json(StatusCode::METHOD_NOT_ALLOWED, serde_json::json!({ "error": "GET or PUT" })),
        _ => json(StatusCode::NOT_FOUND, serde_json::json!({ "error": "no such admin route" })),
    }
}
