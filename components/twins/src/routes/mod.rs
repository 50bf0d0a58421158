//! One module per family of the API.

pub mod history;
pub mod identities;
pub mod ledgers;
pub mod people;
pub mod secrets;
pub mod twins;
