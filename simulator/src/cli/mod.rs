//! Front ends of the commands a user runs by hand (docs/by-hand.md): `loadgen`, `issuer`,
//! `token`; and of replay (docs/replay.md): `import`, `replay`, `report`, `generate`. Each parses its arguments, calls the library and maps the outcome to an exit code.

pub mod generate;
pub mod import;
pub mod issuer;
pub mod loadgen;
pub mod replay;
pub mod report;
pub mod token;

use std::time::Duration;

/// `250ms`, `30s`, `1h`: durations as the config and scenarios write them.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("`{text}` is not a duration: {e}"))
}
