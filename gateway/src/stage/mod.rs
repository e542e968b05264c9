//! The eight stages, one module each, in pipeline order.
//!
//! A stage is a small type with one async method: it reads and enriches the
//! [`RequestContext`](crate::pipeline::RequestContext) or stops the request with a
//! [`Rejection`](crate::rejection::Rejection). The driver in [`crate::pipeline`] runs them in order.

pub mod authn;
pub mod authz;
pub mod forward;
pub mod mutate_request;
pub mod mutate_response;
pub mod ratelimit;
pub mod route;
pub mod tls;
