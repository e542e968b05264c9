//! The vocabulary every layer speaks — stage ids, stop reasons, the identity, the scheme, the
//! limit outcome, request ids and trace context, the typed stop and its problem body, gRPC's
//! codes and fields, field lookups for short heads, the field names the gateway manages and the
//! record's own field names. The bottom layer: it imports nothing from the crate, so anything may
//! use it.

pub mod fields;
pub mod grpc;
pub mod identity;
pub mod limit;
pub mod reason;
pub mod record_fields;
pub mod rejection;
pub mod scheme;
pub mod stage;
pub mod trace;

pub use grpc::GrpcCode;
pub use identity::Identity;
pub use limit::{LimitDecision, LimitOutcome};
pub use reason::Reason;
pub use rejection::Rejection;
pub use scheme::Scheme;
pub use stage::StageId;
