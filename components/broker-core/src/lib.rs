//! The I4.0 broker's decisions that need no I/O, as a plain library: the
//! `broker` component calls them, and they are unit-tested natively
//! (`cargo test -p broker-core`).

pub mod loop_guard;
