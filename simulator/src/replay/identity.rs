//! Credentials minted afresh for replay time: tokens re-signed for the recorded identity (or the
//! same kind of invalid token), API keys mapped to test keys by key id.
