//! API keys for a replay: the gateway config's keys replaced by fresh test keys (in-process
//! runs), or the `--api-keys FILE` map of key id to key (`--target` runs).

use std::collections::BTreeMap;
use std::path::Path;

use super::random_text;

/// `--api-keys FILE`: a YAML map of key id to key.
pub(super) fn read_api_key_map(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--api-keys {}: {e}", path.display()))?;
    serde_yaml_ng::from_str(&text).map_err(|e| {
        format!(
            "--api-keys {}: expected a map of API key id to key (`partner-demo: KEY`): {e}",
            path.display()
        )
    })
}

/// For in-process runs: `config_text` with every API key (inline `auth.api_keys.keys` and the
/// entries of the `file:` they are loaded from, resolved against `config_dir`) replaced by a
/// fresh random test key, held as its SHA-256 like any key; returns the rewritten config and key
/// id → key. A config without API keys comes back unchanged, with an empty map.
pub fn test_api_keys(
    config_text: &str,
    config_dir: &Path,
) -> Result<(String, BTreeMap<String, String>), String> {
    let mut config: serde_yaml_ng::Value = serde_yaml_ng::from_str(config_text)
        .map_err(|e| format!("the gateway config is not YAML: {e}"))?;
    let Some(api_keys) = config
        .get_mut("auth")
        .and_then(|a| a.get_mut("api_keys"))
        .and_then(serde_yaml_ng::Value::as_mapping_mut)
    else {
        return Ok((config_text.to_owned(), BTreeMap::new()));
    };
    let mut entries: Vec<serde_yaml_ng::Value> = match api_keys.get("keys") {
        Some(serde_yaml_ng::Value::Sequence(keys)) => keys.clone(),
        Some(_) => return Err("auth.api_keys.keys: expected a sequence of keys".into()),
        None => Vec::new(),
    };
    if let Some(file) = api_keys.remove("file") {
        let file = file
            .as_str()
            .ok_or("auth.api_keys.file: expected a file name")?;
        let path = config_dir.join(file);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("auth.api_keys.file: cannot read `{}`: {e}", path.display()))?;
        match serde_yaml_ng::from_str(&text) {
            Ok(serde_yaml_ng::Value::Sequence(keys)) => entries.extend(keys),
            Ok(_) | Err(_) => {
                return Err(format!(
                    "auth.api_keys.file: `{}` is not a sequence of keys",
                    path.display()
                ));
            }
        }
    }
    let mut keys = BTreeMap::new();
    for (i, entry) in entries.iter_mut().enumerate() {
        let entry = entry
            .as_mapping_mut()
            .ok_or_else(|| format!("auth.api_keys: key {}: expected a mapping", i + 1))?;
        let id = entry
            .get("id")
            .and_then(serde_yaml_ng::Value::as_str)
            .ok_or_else(|| format!("auth.api_keys: key {}: no `id`", i + 1))?
            .to_owned();
        let key = format!("replay-test-{}", random_text());
        let digest = gateway::identity::api_key::digest(key.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        entry.remove("key");
        entry.insert("sha256".into(), hex.into());
        keys.insert(id, key);
    }
    api_keys.insert("keys".into(), serde_yaml_ng::Value::Sequence(entries));
    let text = serde_yaml_ng::to_string(&config)
        .map_err(|e| format!("cannot rewrite the gateway config: {e}"))?;
    Ok((text, keys))
}
