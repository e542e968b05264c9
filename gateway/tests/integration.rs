//! The gateway's one integration test binary: real sockets on 127.0.0.1, a real upstream that
//! records what it received, the gateway started in-process on port 0.

mod integration {
    pub mod util;

    mod admin;
    mod cli;
    mod edge;
    mod forward;
    mod headers;
    mod routing;
    mod server;
    mod tidy;
}
