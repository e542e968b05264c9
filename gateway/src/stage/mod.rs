//! The eight stages, one module each, in pipeline order, and the [`context`] they share.
//!
//! A stage is glue: it reads the [`RequestContext`](context::RequestContext), calls the layers
//! below (routing, identity, rate limits, resilience, state), and either passes — possibly
//! enriching the context — or stops the request with a [`Rejection`](crate::vocab::Rejection).
//!
//! Every stage has one signature, `async fn run(state: &GatewayState, cx: &mut RequestContext)
//! -> Result<Out, Rejection>`, and the driver in [`crate::pipeline`] runs each through the same
//! `timed` helper. What a stage hands to a later one travels as a value, not as an optional field:
//! `route` returns the [`Target`](context::Target) that `forward` takes as a third argument, and
//! `forward` returns the upstream's response; `mutate_response`, which runs on every answer and
//! cannot stop one, takes the answer to shape instead.

pub mod authn;
pub mod authz;
pub mod context;
pub mod forward;
pub mod mutate_request;
pub mod mutate_response;
pub mod ratelimit;
pub mod route;
pub mod tls;
