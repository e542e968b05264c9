//! What a replay sends to: the real gateway in-process or as the `gateway` binary (with fake
//! upstreams and issuer), or a running gateway at `--target`.
