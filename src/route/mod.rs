//! Which endpoints may serve a request, in what order.
pub mod plan;
