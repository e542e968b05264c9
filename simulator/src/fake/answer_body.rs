//! The body every answer of the fake upstream streams, plain or gRPC: boxed, so a slow, reset or
//! framed body is one type for hyper.

use bytes::Bytes;

pub(super) type AnswerBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;
