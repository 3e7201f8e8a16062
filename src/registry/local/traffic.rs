//! Traffic policies stored beside a model of the local registry, shared by
//! every server reading the directory: `<root>/<model>/traffic.json`, one
//! JSON object of endpoint → policy, written atomically (like
//! `aliases.json`) under the model's lock.

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;

use serde_json::{Map, Value};

use super::{io_error, write_error, LocalRegistry};
use crate::error::Error;
use crate::registry::atomic;
use crate::registry::TrafficUpdate;

const TRAFFIC: &str = "traffic.json";

impl LocalRegistry {
    /// The stored policies of `model`'s endpoints, each as JSON text.
    pub(super) fn read_traffic(&self, model: &str) -> Result<BTreeMap<String, String>, Error> {
        let dir = self.existing_model_dir(model)?;
        Ok(read(&dir.join(TRAFFIC))?
            .into_iter()
            .map(|(endpoint, policy)| (endpoint, policy.to_string()))
            .collect())
    }

    /// Runs `update` on `endpoint`'s stored policy under the model's lock
    /// and stores what it answers (None: removed).
    pub(super) fn write_traffic(
        &self,
        model: &str,
        endpoint: &str,
        update: &mut TrafficUpdate,
    ) -> Result<(), Error> {
        let dir = self.existing_model_dir(model)?;
        // A registry baked into an image or mounted read-only keeps no
        // traffic: the change is then the serving replica's only.
        let writable = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".lock"));
        if let Err(e) = writable {
            if matches!(
                e.kind(),
                ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem
            ) {
                return Err(Error::Unsupported(format!(
                    "the registry directory {} cannot be written ({e}), so traffic changes are not shared with other replicas",
                    dir.display()
                )));
            }
        }
        let _lock = self.lock(&dir)?;
        let path = dir.join(TRAFFIC);
        let mut stored = read(&path)?;
        let current = stored.get(endpoint).map(Value::to_string);
        let next = update(current.as_deref())?;
        if next == current {
            return Ok(());
        }
        match next {
            Some(text) => {
                let policy: Value = serde_json::from_str(&text).map_err(|e| {
                    Error::Internal(format!("a traffic policy to store is not JSON: {e}"))
                })?;
                stored.insert(endpoint.to_string(), policy);
            }
            None => {
                stored.remove(endpoint);
            }
        }
        let body = serde_json::to_vec_pretty(&stored)
            .map_err(|e| Error::Internal(format!("encode traffic policies: {e}")))?;
        atomic::write_file(&path, &body).map_err(write_error)
    }
}

/// The file's object; none when there is no file.
fn read(path: &std::path::Path) -> Result<Map<String, Value>, Error> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Map::new()),
        Err(e) => return Err(io_error("read", path, e)),
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::Internal(format!(
            "{} is not a JSON object of endpoint → traffic policy: {e}; delete the file (`podium traffic reset ENDPOINT` rewrites it) to go back to the --config file's policies",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::registry::Registry;

    use super::*;

    #[test]
    fn policies_are_stored_per_endpoint_and_updated_under_the_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let reg = LocalRegistry::new(tmp.path());
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fraud/v1.onnx");
        reg.register("fraud", &file).unwrap();
        assert!(reg.stored_traffic("fraud").unwrap().is_empty());

        let set = |text: &'static str| move |_: Option<&str>| Ok(Some(text.to_string()));
        reg.update_traffic("fraud", "a", &mut set(r#"{"arms":[1]}"#))
            .unwrap();
        reg.update_traffic("fraud", "b", &mut set(r#"{"arms":[2]}"#))
            .unwrap();
        let stored = reg.stored_traffic("fraud").unwrap();
        assert_eq!(stored["a"], r#"{"arms":[1]}"#);
        assert_eq!(stored["b"], r#"{"arms":[2]}"#);

        // A refusing update writes nothing; clearing removes one endpoint.
        let refused = reg.update_traffic("fraud", "a", &mut |seen: Option<&str>| {
            assert_eq!(seen, Some(r#"{"arms":[1]}"#));
            Err(Error::Refused("changed meanwhile".into()))
        });
        assert!(matches!(refused, Err(Error::Refused(_))));
        reg.update_traffic("fraud", "a", &mut |_: Option<&str>| Ok(None))
            .unwrap();
        let stored = reg.stored_traffic("fraud").unwrap();
        assert_eq!(stored.keys().collect::<Vec<_>>(), ["b"]);

        fs::write(tmp.path().join("fraud").join(TRAFFIC), "[").unwrap();
        let err = reg.stored_traffic("fraud").unwrap_err().to_string();
        assert!(err.contains("podium traffic reset"), "{err}");
    }
}
