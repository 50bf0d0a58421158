//! The twins component: the Trusted-Twin-compatible twin API (accounts,
//! roles, users, User Secrets, Twins, Ledgers with history and references,
//! Identities) over `wasi:keyvalue`, with rules evaluated in the sandbox.
//!
//! HTTP is the gateway's business: calls arrive decoded as
//! `twinlattice:twins/api.request` and leave as a status and a JSON body.
//! API.md documents every behaviour the Trusted Twin docs leave open.

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/twins",
        world: "twins-component",
        generate_all,
    });
}

mod aas_twins;
mod access;
mod admin;
mod auth;
mod clock;
mod error;
mod http_face;
// Shared with the gateway, which uses all of it.
#[allow(dead_code)]
#[path = "../../shared/http_io.rs"]
mod http_io;
mod ids;
mod kv;
mod limits;
mod model;
mod request;
mod rights;
mod routes;
mod rule;

use bindings::exports::twinlattice::twins::api::{Guest as Api, Method, Request, Response};
use error::{ApiError, ApiResult, Subcode};
use request::Call;
use serde_json::Value;

/// A successful answer: status and body.
pub struct Answer {
    pub status: u16,
    pub body: Body,
}

/// An answer's body: a JSON value, or JSON text already written (history
/// answers splice stored values without parsing them).
pub enum Body {
    Json(Value),
    Text(String),
}

impl Answer {
    pub fn ok(body: Value) -> ApiResult<Answer> {
        Ok(Answer { status: 200, body: Body::Json(body) })
    }
    pub fn created(body: Value) -> ApiResult<Answer> {
        Ok(Answer { status: 201, body: Body::Json(body) })
    }
    pub fn ok_text(json: String) -> ApiResult<Answer> {
        Ok(Answer { status: 200, body: Body::Text(json) })
    }
}

/// Families of the Trusted Twin API this server does not serve.
const DISABLED_FAMILIES: &[&str] =
    &["batches", "token", "cache", "download", "log", "notifications", "usage", "stickers"];

fn dispatch(method: Method, path: &[String], call: &Call) -> ApiResult<Answer> {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    // The only call without authentication.
    if let (Method::Post, ["secrets", account, pin]) = (method, p.as_slice()) {
        return routes::secrets::create_secret(account, pin);
    }
    if p.first().is_some_and(|f| DISABLED_FAMILIES.contains(f)) || p.starts_with(&["account", "services"]) {
        return Err(ApiError::new(Subcode::ServiceDisabled, "This service is not available on this server."));
    }
    // The hottest reads (a ledger of a twin) go in the same store call as
    // the secret when this instance knows the caller.
    let prefetch = |account: &str| match (method, p.as_slice()) {
        (Method::Get, ["twins", t, "ledgers", l, ..]) => {
            let ledger_account = match *l {
                "personal" => account,
                uuid if ids::is_uuid(uuid) => uuid,
                _ => return Vec::new(),
            };
            vec![kv::key::twin(t), kv::key::ledger(t, ledger_account)]
        }
        _ => Vec::new(),
    };
    let caller = auth::authenticate(call.authorization.as_deref(), call.dictionary.as_deref(), &prefetch)?;
    let c = &caller;
    use routes::*;
    match (method, p.as_slice()) {
        (Method::Get, ["whoami"]) => Answer::ok(serde_json::json!({
            "account": c.account, "user": c.user.uuid, "role": c.role.uuid,
        })),
        (Method::Post, ["trace"]) => Answer::created(serde_json::json!({})),
        (Method::Get, ["account"]) => people::get_account(c),
        (Method::Patch, ["account"]) => people::update_account(c, call),
        (Method::Get, ["roles"]) => people::list_roles(c),
        (Method::Post, ["roles"]) => people::create_role(c, call),
        (Method::Get, ["roles", r]) => people::get_role(c, r),
        (Method::Patch, ["roles", r]) => people::update_role(c, r, call),
        (Method::Delete, ["roles", r]) => people::delete_role(c, r),
        (Method::Get, ["users"]) => people::list_users(c),
        (Method::Post, ["users"]) => people::create_user(c, call),
        (Method::Get, ["users", u]) => people::get_user(c, u),
        (Method::Patch, ["users", u]) => people::update_user(c, u, call),
        (Method::Delete, ["users", u]) => people::delete_user(c, u),
        (Method::Post, ["users", u, "secrets"]) => secrets::create_pin(c, u, call),
        (Method::Get, ["users", u, "secrets"]) => secrets::get(c, u),
        (Method::Patch, ["users", u, "secrets"]) => secrets::update(c, u, call),
        (Method::Delete, ["users", u, "secrets"]) => secrets::delete(c, u),
        (Method::Get, ["twins"]) => twins::scan(c, call),
        (Method::Post, ["twins"]) => twins::create(c, call),
        (Method::Get, ["twins", t]) => twins::get(c, t, call),
        (Method::Patch, ["twins", t]) => twins::update(c, t, call),
        (Method::Delete, ["twins", t]) => twins::terminate(c, t),
        (Method::Post, ["twins", t, "ledgers", l]) => ledgers::add(c, t, l, call),
        (Method::Get, ["twins", t, "ledgers", l]) => ledgers::get(c, t, l, call, ledgers::View::Full),
        (Method::Patch, ["twins", t, "ledgers", l]) => ledgers::update(c, t, l, call, ledgers::Write::Entries),
        (Method::Delete, ["twins", t, "ledgers", l]) => ledgers::delete(c, t, l, call),
        (Method::Get, ["twins", t, "ledgers", l, "value"]) => ledgers::get(c, t, l, call, ledgers::View::Values),
        (Method::Patch, ["twins", t, "ledgers", l, "value"]) => ledgers::update(c, t, l, call, ledgers::Write::Values),
        (Method::Get, ["twins", t, "ledgers", l, "history"]) => history::get(c, t, l, call),
        (Method::Post, ["twins", t, "identities"]) => identities::create(c, t, call),
        (Method::Get, ["twins", t, "identities"]) => identities::list(c, t, call),
        (Method::Get, ["twins", t, "identities", i]) => identities::get(c, t, i),
        (Method::Patch, ["twins", t, "identities", i]) => identities::update(c, t, i, call),
        (Method::Delete, ["twins", t, "identities", i]) => identities::delete(c, t, i),
        (Method::Get, ["resolve", i]) => identities::resolve(c, i, call),
        (_, ["twins", _, "docs" | "stickers", ..]) => Err(ApiError::new(Subcode::ServiceDisabled, "This service is not available on this server.")),
        _ => Err(ApiError::not_found("Endpoint")),
    }
}

/// The component's exports: `api` here, `admin` in `admin.rs`.
pub(crate) struct Component;

impl Api for Component {
    fn handle(request: Request) -> Response {
        serve(request)
    }
}

/// Serve one decoded call (from the `api` export or the HTTP face).
pub(crate) fn serve(mut request: Request) -> Response {
    let call = Call::new(&mut request);
    match dispatch(request.method, &request.path, &call) {
        Ok(Answer { status, body: Body::Json(v) }) => Response { status, body: v.to_string() },
        Ok(Answer { status, body: Body::Text(text) }) => Response { status, body: text },
        Err(e) => {
            // The log line and the body share the trace id, so an operator
            // finds the cause the client was not told.
            let trace = ids::uuid4();
            if e.subcode == Subcode::General {
                bindings::wasi::logging::logging::log(
                    bindings::wasi::logging::logging::Level::Error,
                    "twins",
                    &format!("trace {trace}: {}", e.internal()),
                );
            }
            Response { status: e.status(), body: e.body(&trace) }
        }
    }
}

bindings::export!(Component with_types_in bindings);
