//! The I4.0 broker's decisions that need no I/O (loop guard, delivery budgets, the StatusResponse and topic of I4.0 messages), as a plain library: the
//! `broker` component calls them, and they are unit-tested natively
//! (`cargo test -p broker-core`).

pub mod budget;
pub mod i40;
pub mod loop_guard;
