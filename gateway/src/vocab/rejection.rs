//! The typed stop: which stage stopped a request, why, with what status — and the one
//! RFC 9457 `application/problem+json` body every stop is answered with.

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use super::{Reason, StageId};

/// A request stopped by a stage. `reason` is a stable token (it becomes the problem `type`, the
/// record's reason and a scenario's expected reason); `detail` is for humans and never carries
/// internals such as upstream addresses or stack traces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub stage: StageId,
    pub status: StatusCode,
    pub reason: Reason,
    pub detail: Cow<'static, str>,
    /// Extra response headers the stop must carry (WWW-Authenticate, Retry-After, Allow, ...).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
    /// Close the connection after answering: the framing could not be trusted.
    pub close_connection: bool,
}

impl Rejection {
    /// A stop at `stage` for `reason`, answered with the reason's status.
    pub fn new(stage: StageId, reason: Reason, detail: impl Into<Cow<'static, str>>) -> Self {
        debug_assert!(
            reason.stages().contains(&stage),
            "{reason} is not a reason {stage} gives"
        );
        Self {
            stage,
            status: reason.status(),
            reason,
            detail: detail.into(),
            headers: Vec::new(),
            close_connection: false,
        }
    }

    /// Answers with `status` instead of the reason's own (a `catch-all` route's configured status).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn closing_connection(mut self) -> Self {
        self.close_connection = true;
        self
    }

    /// The RFC 9457 body. `type` is a URN built from the reason so clients can switch on it
    /// without the gateway pretending to host documentation at a made-up address.
    pub fn problem_body(&self, request_id: &str) -> Bytes {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let problem = Problem {
            type_: ProblemType(self.reason.as_str()),
            title,
            status: self.status.as_u16(),
            detail: &self.detail,
            stage: self.stage,
            request_id,
        };
        // Serializing a struct of strings and integers cannot fail.
        Bytes::from(serde_json::to_vec(&problem).unwrap_or_default())
    }
}

pub const PROBLEM_JSON: &str = "application/problem+json";

struct ProblemType(&'static str);

impl Serialize for ProblemType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("urn:gatehouse:problem:{}", self.0))
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    type_: ProblemType,
    title: &'a str,
    status: u16,
    detail: &'a str,
    stage: StageId,
    request_id: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_body_names_stage_reason_and_request_id() {
        let r = Rejection::new(
            StageId::Route,
            Reason::NoRoute,
            "no route matches GET /nope",
        );
        let body: serde_json::Value = serde_json::from_slice(&r.problem_body("req-1")).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "type": "urn:gatehouse:problem:no-route",
                "title": "Not Found",
                "status": 404,
                "detail": "no route matches GET /nope",
                "stage": "route",
                "request_id": "req-1",
            })
        );
    }
}
