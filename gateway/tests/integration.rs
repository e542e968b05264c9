//! The gateway's one integration test binary: real sockets on 127.0.0.1, a real upstream that
//! records what it received, the gateway started in-process on port 0.

mod integration {
    pub mod eventually;
    mod h2_refusals;
    pub mod util;

    mod admin;
    mod authority;
    mod cli;
    mod cli_run;
    mod cluster_support;
    mod credentials;
    mod edge;
    mod forward;
    mod grpc;
    mod headers;
    mod identity_fixture;
    mod identity_headers;
    mod identity_jwks;
    mod identity_jwt;
    pub mod identity_support;
    mod identity_tls;
    mod limits;
    mod parking;
    mod ratelimit_batch;
    mod ratelimit_cluster;
    mod ratelimit_lease;
    mod ratelimit_link;
    mod ratelimit_memory;
    mod ratelimit_processes;
    mod ratelimit_redis;
    mod ratelimit_support;
    mod recording;
    mod reload;
    mod resilience_balancing;
    mod resilience_breaker;
    mod resilience_edge;
    mod resilience_health;
    mod resilience_retries;
    pub mod resilience_util;
    mod routing;
    mod server;
    mod streams;
    mod strict_http1;
    mod tidy;
    mod upstream_checks;
    mod upstream_h2;
}
