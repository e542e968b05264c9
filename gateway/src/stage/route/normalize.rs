//! Path normalization before matching. (Interface stub: the routing helper fills it in.)

use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path is not an absolute path")]
    NotAbsolute,
}

pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    Ok(Cow::Borrowed(raw))
}
