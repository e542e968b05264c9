//! `authn`: establishes who is calling. JWT, API keys and client certificates arrive with the
//! identity issue; until then no route demands an identity, so every request passes anonymous.

use crate::pipeline::{RequestContext, StageResult};

pub fn run(_cx: &mut RequestContext) -> StageResult {
    Ok(())
}
