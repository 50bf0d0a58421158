//! The embedded host's side of the protocol bridges
//! (`providers/bridges`): it is their `Inbox`.

pub mod inbound;
