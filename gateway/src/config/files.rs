//! Files a config names (certificates, keys, CA bundles, the API-key file) are read when the
//! config is compiled, so a reload re-reads them; one rule says where a relative path points, so
//! that `gateway check` and the running gateway read the same file.

use std::path::{Path, PathBuf};

/// Where relative paths in a config are resolved from: the config file's directory.
pub(super) fn resolve(source: &str, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        return path.to_path_buf();
    }
    match Path::new(source).parent() {
        Some(dir) if Path::new(source).is_file() => dir.join(path),
        _ => path.to_path_buf(),
    }
}
