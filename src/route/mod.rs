//! Which endpoints may serve a request, in what order.
pub mod breaker;
pub mod plan;
pub mod score;
pub mod stats;
