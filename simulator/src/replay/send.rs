//! The open-model sender: exchanges leave at their scheduled time whatever the answers do,
//! per-client order kept, connections reused as recorded; latency counts from the scheduled time.
