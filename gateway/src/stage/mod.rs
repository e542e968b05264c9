//! The eight stages, one module each, in pipeline order, and the [`context`] they share.
//!
//! A stage is glue: it reads the [`RequestContext`](context::RequestContext), calls the layers
//! below (routing, identity, rate limits, resilience, state), and either passes — possibly
//! enriching the context — or stops the request with a [`Rejection`](crate::vocab::Rejection).
//! The driver in [`crate::pipeline`] runs them in order.

pub mod authn;
pub mod authz;
pub mod context;
pub mod forward;
pub mod mutate_request;
pub mod mutate_response;
pub mod ratelimit;
pub mod route;
pub mod tls;
