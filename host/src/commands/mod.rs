//! One module per subcommand.

pub mod account;
pub mod admin_client;
pub mod lattice;
pub mod policy;
pub mod serve;
pub mod validate;
