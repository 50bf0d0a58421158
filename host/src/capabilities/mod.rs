//! Native implementations of the capabilities components import: what a
//! wasmCloud host or provider gives them on a lattice, given in-process here.

pub mod bus;
pub mod keyvalue;
pub mod locks;
pub mod kv_store;
pub mod logging;
pub mod outbound;
