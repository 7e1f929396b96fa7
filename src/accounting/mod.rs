//! Money: what a call cost, per direction, from the usage the provider returned.
pub mod cost;
