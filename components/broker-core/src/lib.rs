//! The I4.0 broker's decisions that need no I/O (loop guard, delivery budgets), as a plain library: the
//! `broker` component calls them, and they are unit-tested natively
//! (`cargo test -p broker-core`).

pub mod budget;
pub mod loop_guard;
