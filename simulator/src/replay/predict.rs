//! The lab against reality: the config's own rate-limit policies run in virtual time on the
//! recording, next to what the real gateway decided.
