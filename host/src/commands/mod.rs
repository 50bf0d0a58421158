//! One module per subcommand.

pub mod account;
pub mod policy;
pub mod serve;
pub mod validate;
