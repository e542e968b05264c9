//! Why a stage stopped a request: one stable kebab-case token per reason — the problem `type`, the
//! record's `reason`, a scenario's expected reason and a metric label — with the stage(s) that
//! give it and the status it answers with. Code that branches on a reason is an exhaustive
//! `match`; docs/records.md's table is checked against [`Reason::ALL`].

use http::StatusCode;

use super::StageId;
use super::grpc::GrpcCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    UriTooLong,
    HeadersTooLarge,
    MisdirectedRequest,
    MalformedRequest,
    UnsupportedTransferCoding,
    MissingHost,
    InvalidHost,
    MissingCredentials,
    DuplicateCredentials,
    UnsupportedAuthScheme,
    MalformedToken,
    TokenTooLarge,
    AlgorithmNotAllowed,
    UnsupportedCrit,
    EmbeddedKey,
    WrongIssuer,
    KeysUnavailable,
    UnknownKid,
    BadSignature,
    TokenExpired,
    TokenNotYetValid,
    TokenLifetimeTooLong,
    WrongAudience,
    MissingClaim,
    InvalidClaim,
    InvalidApiKey,
    ClientCertRequired,
    InsufficientScope,
    MissingRole,
    TenantMismatch,
    QuotaExceeded,
    LimitStoreUnavailable,
    BadPath,
    AmbiguousPath,
    NoRoute,
    CatchAll,
    BodyTooLarge,
    InvalidGrpcTimeout,
    CircuitOpen,
    NoHealthyInstance,
    Overloaded,
    IdentityNotRepresentable,
    CorsRejected,
    UpstreamUnreachable,
    UpstreamReset,
    UpstreamTimeout,
    UpstreamBadUpgrade,
    MalformedBody,
    RequestBodyTimeout,
    UpstreamBadResponse,
    UpstreamIdleTimeout,
    /// Not a stop before the answer: the response was still streaming when
    /// `limits.max_stream_duration` passed, and the gateway cut it.
    StreamDurationExceeded,
}

impl Reason {
    pub const ALL: [Reason; 52] = [
        Reason::UriTooLong,
        Reason::HeadersTooLarge,
        Reason::MisdirectedRequest,
        Reason::MalformedRequest,
        Reason::UnsupportedTransferCoding,
        Reason::MissingHost,
        Reason::InvalidHost,
        Reason::MissingCredentials,
        Reason::DuplicateCredentials,
        Reason::UnsupportedAuthScheme,
        Reason::MalformedToken,
        Reason::TokenTooLarge,
        Reason::AlgorithmNotAllowed,
        Reason::UnsupportedCrit,
        Reason::EmbeddedKey,
        Reason::WrongIssuer,
        Reason::KeysUnavailable,
        Reason::UnknownKid,
        Reason::BadSignature,
        Reason::TokenExpired,
        Reason::TokenNotYetValid,
        Reason::TokenLifetimeTooLong,
        Reason::WrongAudience,
        Reason::MissingClaim,
        Reason::InvalidClaim,
        Reason::InvalidApiKey,
        Reason::ClientCertRequired,
        Reason::InsufficientScope,
        Reason::MissingRole,
        Reason::TenantMismatch,
        Reason::QuotaExceeded,
        Reason::LimitStoreUnavailable,
        Reason::BadPath,
        Reason::AmbiguousPath,
        Reason::NoRoute,
        Reason::CatchAll,
        Reason::BodyTooLarge,
        Reason::InvalidGrpcTimeout,
        Reason::CircuitOpen,
        Reason::NoHealthyInstance,
        Reason::Overloaded,
        Reason::IdentityNotRepresentable,
        Reason::CorsRejected,
        Reason::UpstreamUnreachable,
        Reason::UpstreamReset,
        Reason::UpstreamTimeout,
        Reason::UpstreamBadUpgrade,
        Reason::MalformedBody,
        Reason::RequestBodyTimeout,
        Reason::UpstreamBadResponse,
        Reason::UpstreamIdleTimeout,
        Reason::StreamDurationExceeded,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::UriTooLong => "uri-too-long",
            Reason::HeadersTooLarge => "headers-too-large",
            Reason::MisdirectedRequest => "misdirected-request",
            Reason::MalformedRequest => "malformed-request",
            Reason::UnsupportedTransferCoding => "unsupported-transfer-coding",
            Reason::MissingHost => "missing-host",
            Reason::InvalidHost => "invalid-host",
            Reason::MissingCredentials => "missing-credentials",
            Reason::DuplicateCredentials => "duplicate-credentials",
            Reason::UnsupportedAuthScheme => "unsupported-auth-scheme",
            Reason::MalformedToken => "malformed-token",
            Reason::TokenTooLarge => "token-too-large",
            Reason::AlgorithmNotAllowed => "algorithm-not-allowed",
            Reason::UnsupportedCrit => "unsupported-crit",
            Reason::EmbeddedKey => "embedded-key",
            Reason::WrongIssuer => "wrong-issuer",
            Reason::KeysUnavailable => "keys-unavailable",
            Reason::UnknownKid => "unknown-kid",
            Reason::BadSignature => "bad-signature",
            Reason::TokenExpired => "token-expired",
            Reason::TokenNotYetValid => "token-not-yet-valid",
            Reason::TokenLifetimeTooLong => "token-lifetime-too-long",
            Reason::WrongAudience => "wrong-audience",
            Reason::MissingClaim => "missing-claim",
            Reason::InvalidClaim => "invalid-claim",
            Reason::InvalidApiKey => "invalid-api-key",
            Reason::ClientCertRequired => "client-cert-required",
            Reason::InsufficientScope => "insufficient-scope",
            Reason::MissingRole => "missing-role",
            Reason::TenantMismatch => "tenant-mismatch",
            Reason::QuotaExceeded => "quota-exceeded",
            Reason::LimitStoreUnavailable => "limit-store-unavailable",
            Reason::BadPath => "bad-path",
            Reason::AmbiguousPath => "ambiguous-path",
            Reason::NoRoute => "no-route",
            Reason::CatchAll => "catch-all",
            Reason::BodyTooLarge => "body-too-large",
            Reason::InvalidGrpcTimeout => "invalid-grpc-timeout",
            Reason::CircuitOpen => "circuit-open",
            Reason::NoHealthyInstance => "no-healthy-instance",
            Reason::Overloaded => "overloaded",
            Reason::IdentityNotRepresentable => "identity-not-representable",
            Reason::CorsRejected => "cors-rejected",
            Reason::UpstreamUnreachable => "upstream-unreachable",
            Reason::UpstreamReset => "upstream-reset",
            Reason::UpstreamTimeout => "upstream-timeout",
            Reason::UpstreamBadUpgrade => "upstream-bad-upgrade",
            Reason::MalformedBody => "malformed-body",
            Reason::RequestBodyTimeout => "request-body-timeout",
            Reason::UpstreamBadResponse => "upstream-bad-response",
            Reason::UpstreamIdleTimeout => "upstream-idle-timeout",
            Reason::StreamDurationExceeded => "stream-duration-exceeded",
        }
    }

    /// The stages that stop a request for this reason (`body-too-large` is found at `route` from a
    /// declared length and at `forward` while streaming).
    pub const fn stages(self) -> &'static [StageId] {
        match self {
            Reason::UriTooLong => &[StageId::Tls],
            Reason::HeadersTooLarge => &[StageId::Tls],
            Reason::MisdirectedRequest => &[StageId::Tls],
            Reason::MalformedRequest => &[StageId::Tls],
            Reason::UnsupportedTransferCoding => &[StageId::Tls],
            Reason::MissingHost => &[StageId::Tls],
            Reason::InvalidHost => &[StageId::Tls],
            Reason::MissingCredentials => &[StageId::Authn],
            Reason::DuplicateCredentials => &[StageId::Authn],
            Reason::UnsupportedAuthScheme => &[StageId::Authn],
            Reason::MalformedToken => &[StageId::Authn],
            Reason::TokenTooLarge => &[StageId::Authn],
            Reason::AlgorithmNotAllowed => &[StageId::Authn],
            Reason::UnsupportedCrit => &[StageId::Authn],
            Reason::EmbeddedKey => &[StageId::Authn],
            Reason::WrongIssuer => &[StageId::Authn],
            Reason::KeysUnavailable => &[StageId::Authn],
            Reason::UnknownKid => &[StageId::Authn],
            Reason::BadSignature => &[StageId::Authn],
            Reason::TokenExpired => &[StageId::Authn],
            Reason::TokenNotYetValid => &[StageId::Authn],
            Reason::TokenLifetimeTooLong => &[StageId::Authn],
            Reason::WrongAudience => &[StageId::Authn],
            Reason::MissingClaim => &[StageId::Authn],
            Reason::InvalidClaim => &[StageId::Authn],
            Reason::InvalidApiKey => &[StageId::Authn],
            Reason::ClientCertRequired => &[StageId::Authn],
            Reason::InsufficientScope => &[StageId::Authz],
            Reason::MissingRole => &[StageId::Authz],
            Reason::TenantMismatch => &[StageId::Authz],
            Reason::QuotaExceeded => &[StageId::Ratelimit],
            Reason::LimitStoreUnavailable => &[StageId::Ratelimit],
            Reason::BadPath => &[StageId::Route],
            Reason::AmbiguousPath => &[StageId::Route],
            Reason::NoRoute => &[StageId::Route],
            Reason::CatchAll => &[StageId::Route],
            Reason::BodyTooLarge => &[StageId::Route, StageId::Forward],
            Reason::InvalidGrpcTimeout => &[StageId::Route],
            Reason::CircuitOpen => &[StageId::Route],
            Reason::NoHealthyInstance => &[StageId::Route],
            Reason::Overloaded => &[StageId::Tls, StageId::Route],
            Reason::IdentityNotRepresentable => &[StageId::MutateRequest],
            Reason::CorsRejected => &[StageId::MutateResponse],
            Reason::UpstreamUnreachable => &[StageId::Forward],
            Reason::UpstreamReset => &[StageId::Forward],
            Reason::UpstreamTimeout => &[StageId::Forward],
            Reason::UpstreamBadUpgrade => &[StageId::Forward],
            Reason::MalformedBody => &[StageId::Forward],
            Reason::RequestBodyTimeout => &[StageId::Forward],
            Reason::UpstreamBadResponse => &[StageId::Forward],
            Reason::UpstreamIdleTimeout => &[StageId::Forward],
            // `forward` streams the response; the cut is its.
            Reason::StreamDurationExceeded => &[StageId::Forward],
        }
    }

    /// The status a stop for this reason answers with; a `catch-all` route answers with the status
    /// it is configured with instead.
    pub const fn status(self) -> StatusCode {
        match self {
            Reason::UriTooLong => StatusCode::URI_TOO_LONG,
            Reason::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Reason::MisdirectedRequest => StatusCode::MISDIRECTED_REQUEST,
            Reason::MalformedRequest => StatusCode::BAD_REQUEST,
            Reason::UnsupportedTransferCoding => StatusCode::NOT_IMPLEMENTED,
            Reason::MissingHost => StatusCode::BAD_REQUEST,
            Reason::InvalidHost => StatusCode::BAD_REQUEST,
            Reason::MissingCredentials => StatusCode::UNAUTHORIZED,
            Reason::DuplicateCredentials => StatusCode::UNAUTHORIZED,
            Reason::UnsupportedAuthScheme => StatusCode::UNAUTHORIZED,
            Reason::MalformedToken => StatusCode::UNAUTHORIZED,
            Reason::TokenTooLarge => StatusCode::UNAUTHORIZED,
            Reason::AlgorithmNotAllowed => StatusCode::UNAUTHORIZED,
            Reason::UnsupportedCrit => StatusCode::UNAUTHORIZED,
            Reason::EmbeddedKey => StatusCode::UNAUTHORIZED,
            Reason::WrongIssuer => StatusCode::UNAUTHORIZED,
            Reason::KeysUnavailable => StatusCode::UNAUTHORIZED,
            Reason::UnknownKid => StatusCode::UNAUTHORIZED,
            Reason::BadSignature => StatusCode::UNAUTHORIZED,
            Reason::TokenExpired => StatusCode::UNAUTHORIZED,
            Reason::TokenNotYetValid => StatusCode::UNAUTHORIZED,
            Reason::TokenLifetimeTooLong => StatusCode::UNAUTHORIZED,
            Reason::WrongAudience => StatusCode::UNAUTHORIZED,
            Reason::MissingClaim => StatusCode::UNAUTHORIZED,
            Reason::InvalidClaim => StatusCode::UNAUTHORIZED,
            Reason::InvalidApiKey => StatusCode::UNAUTHORIZED,
            Reason::ClientCertRequired => StatusCode::FORBIDDEN,
            Reason::InsufficientScope => StatusCode::FORBIDDEN,
            Reason::MissingRole => StatusCode::FORBIDDEN,
            Reason::TenantMismatch => StatusCode::FORBIDDEN,
            Reason::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
            Reason::LimitStoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Reason::BadPath => StatusCode::BAD_REQUEST,
            Reason::AmbiguousPath => StatusCode::BAD_REQUEST,
            Reason::NoRoute => StatusCode::NOT_FOUND,
            Reason::CatchAll => StatusCode::NOT_FOUND,
            Reason::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Reason::InvalidGrpcTimeout => StatusCode::BAD_REQUEST,
            Reason::CircuitOpen => StatusCode::SERVICE_UNAVAILABLE,
            Reason::NoHealthyInstance => StatusCode::SERVICE_UNAVAILABLE,
            Reason::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Reason::IdentityNotRepresentable => StatusCode::BAD_REQUEST,
            Reason::CorsRejected => StatusCode::FORBIDDEN,
            Reason::UpstreamUnreachable => StatusCode::BAD_GATEWAY,
            Reason::UpstreamReset => StatusCode::BAD_GATEWAY,
            Reason::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Reason::UpstreamBadUpgrade => StatusCode::BAD_GATEWAY,
            Reason::MalformedBody => StatusCode::BAD_REQUEST,
            Reason::RequestBodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Reason::UpstreamBadResponse => StatusCode::BAD_GATEWAY,
            Reason::UpstreamIdleTimeout => StatusCode::GATEWAY_TIMEOUT,
            // Never sent: the cut comes after the head, whose status the record keeps.
            Reason::StreamDurationExceeded => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The RFC 6750 §3.1 `error` code of the `WWW-Authenticate` challenge a 401 for this reason
    /// carries: none when the request had no credentials at all.
    pub const fn bearer_error(self) -> Option<&'static str> {
        match self {
            Reason::MissingCredentials => None,
            Reason::DuplicateCredentials | Reason::UnsupportedAuthScheme => Some("invalid_request"),
            Reason::MalformedToken
            | Reason::TokenTooLarge
            | Reason::AlgorithmNotAllowed
            | Reason::UnsupportedCrit
            | Reason::EmbeddedKey
            | Reason::WrongIssuer
            | Reason::KeysUnavailable
            | Reason::UnknownKid
            | Reason::BadSignature
            | Reason::TokenExpired
            | Reason::TokenNotYetValid
            | Reason::TokenLifetimeTooLong
            | Reason::WrongAudience
            | Reason::MissingClaim
            | Reason::InvalidClaim
            | Reason::InvalidApiKey
            | Reason::ClientCertRequired => Some("invalid_token"),
            // Not refusals of a credential; were one ever challenged, the token is what failed.
            Reason::UriTooLong
            | Reason::HeadersTooLarge
            | Reason::MisdirectedRequest
            | Reason::InsufficientScope
            | Reason::MissingRole
            | Reason::TenantMismatch
            | Reason::QuotaExceeded
            | Reason::LimitStoreUnavailable
            | Reason::BadPath
            | Reason::NoRoute
            | Reason::CatchAll
            | Reason::BodyTooLarge
            | Reason::InvalidGrpcTimeout
            | Reason::CircuitOpen
            | Reason::NoHealthyInstance
            | Reason::IdentityNotRepresentable
            | Reason::CorsRejected
            | Reason::UpstreamUnreachable
            | Reason::UpstreamReset
            | Reason::UpstreamTimeout
            | Reason::UpstreamBadUpgrade
            | Reason::MalformedRequest
            | Reason::UnsupportedTransferCoding
            | Reason::MissingHost
            | Reason::InvalidHost
            | Reason::AmbiguousPath
            | Reason::Overloaded
            | Reason::MalformedBody
            | Reason::RequestBodyTimeout
            | Reason::UpstreamBadResponse
            | Reason::UpstreamIdleTimeout
            | Reason::StreamDurationExceeded => Some("invalid_token"),
        }
    }

    /// The gRPC status a stop for this reason answers a gRPC call with (HTTP 200, trailers only):
    /// a refused credential is UNAUTHENTICATED, a refused identity PERMISSION_DENIED, a spent
    /// quota RESOURCE_EXHAUSTED, no route UNIMPLEMENTED, an upstream that cannot be reached or
    /// failed UNAVAILABLE, a timeout DEADLINE_EXCEEDED; a malformed request INVALID_ARGUMENT.
    pub const fn grpc_code(self) -> GrpcCode {
        match self {
            Reason::UriTooLong | Reason::BadPath | Reason::InvalidGrpcTimeout => {
                GrpcCode::InvalidArgument
            }
            // Too much sent at once: what gRPC itself answers a message over its size limit with.
            Reason::HeadersTooLarge | Reason::BodyTooLarge => GrpcCode::ResourceExhausted,
            // A connection whose certificate named another host: retrying on a new one works.
            Reason::MisdirectedRequest => GrpcCode::Unavailable,
            Reason::MissingCredentials
            | Reason::DuplicateCredentials
            | Reason::UnsupportedAuthScheme
            | Reason::MalformedToken
            | Reason::TokenTooLarge
            | Reason::AlgorithmNotAllowed
            | Reason::UnsupportedCrit
            | Reason::EmbeddedKey
            | Reason::WrongIssuer
            | Reason::KeysUnavailable
            | Reason::UnknownKid
            | Reason::BadSignature
            | Reason::TokenExpired
            | Reason::TokenNotYetValid
            | Reason::TokenLifetimeTooLong
            | Reason::WrongAudience
            | Reason::MissingClaim
            | Reason::InvalidClaim
            | Reason::InvalidApiKey
            | Reason::ClientCertRequired => GrpcCode::Unauthenticated,
            Reason::InsufficientScope
            | Reason::MissingRole
            | Reason::TenantMismatch
            | Reason::CorsRejected => GrpcCode::PermissionDenied,
            Reason::QuotaExceeded => GrpcCode::ResourceExhausted,
            // Not the caller's quota: the store behind it is down (HTTP answers 503 too).
            Reason::LimitStoreUnavailable => GrpcCode::Unavailable,
            Reason::NoRoute | Reason::CatchAll => GrpcCode::Unimplemented,
            Reason::CircuitOpen
            | Reason::NoHealthyInstance
            | Reason::UpstreamUnreachable
            | Reason::UpstreamReset => GrpcCode::Unavailable,
            Reason::UpstreamTimeout | Reason::StreamDurationExceeded => GrpcCode::DeadlineExceeded,
            Reason::MalformedRequest => GrpcCode::InvalidArgument,
            Reason::UnsupportedTransferCoding => GrpcCode::InvalidArgument,
            Reason::MissingHost => GrpcCode::InvalidArgument,
            Reason::InvalidHost => GrpcCode::InvalidArgument,
            Reason::AmbiguousPath => GrpcCode::InvalidArgument,
            Reason::Overloaded => GrpcCode::Unavailable,
            Reason::MalformedBody => GrpcCode::InvalidArgument,
            Reason::RequestBodyTimeout => GrpcCode::DeadlineExceeded,
            Reason::UpstreamBadResponse => GrpcCode::Unavailable,
            Reason::UpstreamIdleTimeout => GrpcCode::DeadlineExceeded,
            Reason::IdentityNotRepresentable | Reason::UpstreamBadUpgrade => GrpcCode::Internal,
        }
    }

    pub fn parse(token: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == token)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_kebab_case_and_parse_back() {
        for reason in Reason::ALL {
            let token = reason.as_str();
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{token}"
            );
            assert_eq!(Reason::parse(token), Some(reason));
            assert!(!reason.stages().is_empty(), "{token}");
        }
    }

    #[test]
    fn every_stop_of_a_stage_that_judges_the_caller_has_that_stages_grpc_code() {
        for reason in Reason::ALL {
            let expected = match reason.stages() {
                [StageId::Authn] => Some(GrpcCode::Unauthenticated),
                [StageId::Authz] => Some(GrpcCode::PermissionDenied),
                _ => None,
            };
            if let Some(expected) = expected {
                assert_eq!(reason.grpc_code(), expected, "{reason}");
            }
            // A stop is never answered as success, nor as a code only an application can mean.
            assert!(
                !matches!(
                    reason.grpc_code(),
                    GrpcCode::Ok
                        | GrpcCode::NotFound
                        | GrpcCode::AlreadyExists
                        | GrpcCode::DataLoss
                ),
                "{reason}"
            );
        }
        assert_eq!(
            Reason::QuotaExceeded.grpc_code(),
            GrpcCode::ResourceExhausted
        );
        assert_eq!(Reason::NoRoute.grpc_code(), GrpcCode::Unimplemented);
        assert_eq!(
            Reason::UpstreamTimeout.grpc_code(),
            GrpcCode::DeadlineExceeded
        );
        for unavailable in [
            Reason::UpstreamUnreachable,
            Reason::UpstreamReset,
            Reason::CircuitOpen,
        ] {
            assert_eq!(unavailable.grpc_code(), GrpcCode::Unavailable);
        }
    }
}
