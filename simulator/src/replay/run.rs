//! One replay from start to report: read, plan, start the target, send, collect, compare.
