//! Host-side bindings for the interfaces the host implements natively
//! (`wasi:keyvalue`, `wasi:logging`, and the bridges' side of
//! `twinlattice:transport/outbound`, `twinlattice:coordination/locks`,
//! `wasmcloud:bus/lattice`). `wasi:cli`/`io`/`clocks`/`random`/
//! `http` come from wasmtime-wasi(-http), `wasi:config` from
//! wasmtime-wasi-config.

mod generated {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "host-capabilities",
        imports: {
            "twinlattice:transport/outbound/deliver": async | trappable,
            "twinlattice:coordination/locks/acquire": async | trappable,
            "twinlattice:coordination/locks/release": async | trappable,
            default: trappable,
        },
        with: {
            "wasi:keyvalue/store/bucket": crate::capabilities::keyvalue::BucketHandle,
            "wasmcloud:bus/lattice/call-target-interface": crate::capabilities::bus::CallTargetInterface,
        },
        trappable_error_type: {
            "wasi:keyvalue/store/error" => crate::capabilities::keyvalue::KvError,
        },
    });
}

pub use generated::wasi::keyvalue;
pub use generated::wasi::logging::logging;
pub use generated::twinlattice::coordination::locks;
pub use generated::wasmcloud::bus::lattice;
pub use generated::twinlattice::transport::{outbound, types as transport_types};

/// The host's side of `twinlattice:http-face/handler`: it calls the export.
pub mod http_entry {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "http-entry",
        exports: { default: async },
    });
}
