//! The replica id: which of several `podium serve` processes behind one load
//! balancer did something. It names the inference table's files (so
//! replicas writing one table directory never collide), fills the table's
//! `replica` column, and is shown in `GET /admin/status`.

use std::fmt;
use std::str::FromStr;

/// A replica's name: 1-64 ASCII letters, digits, `_`, `-` or `.`, not
/// starting with `.`, so it is safe in a file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReplicaId(String);

impl ReplicaId {
    /// The default: the host name (a Kubernetes pod's name) when it is a
    /// valid id, else a random 8-hex-digit id.
    pub fn detect() -> ReplicaId {
        hostname()
            .and_then(|name| name.parse().ok())
            .unwrap_or_else(ReplicaId::random)
    }

    /// A random id of 8 hex digits, different for every process.
    pub fn random() -> ReplicaId {
        ReplicaId(format!("{:08x}", fastrand::u32(..)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ReplicaId {
    type Err = String;

    fn from_str(id: &str) -> Result<ReplicaId, String> {
        let ok = !id.is_empty()
            && id.len() <= 64
            && !id.starts_with('.')
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if ok {
            Ok(ReplicaId(id.to_string()))
        } else {
            Err(format!(
                "invalid replica id {id:?}: use 1-64 ASCII letters, digits, '_', '-' or '.', not starting with '.' (it is part of the table's file names)"
            ))
        }
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The host name (on Linux the kernel's, which is a Kubernetes pod's
/// name), when there is one.
fn hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_safe_in_file_names() {
        for good in ["podium-0", "web.a_1", "7f3a9c01"] {
            assert_eq!(good.parse::<ReplicaId>().unwrap().as_str(), good);
        }
        for bad in ["", ".hidden", "a/b", "a b", "..", "é", &"x".repeat(65)] {
            let err = bad.parse::<ReplicaId>().unwrap_err();
            assert!(err.contains("invalid replica id"), "{err}");
        }
        let detected = ReplicaId::detect();
        assert_eq!(detected.as_str().parse::<ReplicaId>().unwrap(), detected);
        assert_ne!(ReplicaId::random(), ReplicaId::random());
    }
}
