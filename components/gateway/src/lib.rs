//! The HTTP gateway component: the one `wasi:http/incoming-handler` on the
//! registry port. It owns every HTTP concern — routing, identifier decoding,
//! query parsing, body limits, status codes and the AAS error body — and
//! calls the registry and the broker through their typed WIT interfaces.
//! The registry's routes are `components/shared/registry_face`, which the
//! registry compiles in too (see there).

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/gateway",
        world: "http-gateway",
        generate_all,
    });
}

mod broker_api;
#[path = "../../shared/http_io.rs"]
mod http_io;
#[path = "../../shared/registry_face/mod.rs"]
mod registry_face;

/// The registry the routes call: its imported interfaces.
mod registry_calls {
    pub use crate::bindings::twinlattice::registry::{shells, submodels};
}

use bindings::exports::twinlattice::http_face::handler as face;
use bindings::exports::wasi::http::incoming_handler::Guest as WasiHttp;
use bindings::wasi::http::types::{IncomingRequest, ResponseOutparam};
use http_io::{Incoming, Response};

/// The registry's routes, and the broker's `/i40commu` and `/status`.
fn answer(incoming: Incoming) -> Response {
    registry_face::answer(incoming, broker_api::route)
}

struct Component;

impl WasiHttp for Component {
    fn handle(incoming: IncomingRequest, out: ResponseOutparam) {
        http_io::send(out, answer(Incoming::Wasi(incoming)));
    }
}

impl face::Guest for Component {
    fn handle(request: face::Request) -> face::Response {
        http_io::into_face(answer(Incoming::Whole(request)))
    }
}

bindings::export!(Component with_types_in bindings);
