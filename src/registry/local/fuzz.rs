//! Generated registry directories: `aliases.json` with any content, and
//! version directories with names and contents a person or a crash could
//! leave behind. See [`crate::fuzz`] for how long a run is and how to
//! reproduce one.

use std::fs;

use proptest::prelude::*;

use super::{LocalRegistry, ALIASES, ARTIFACT};
use crate::error::Error;
use crate::fuzz;
use crate::registry::Registry;

/// A version directory name: canonical numbers, and near misses.
fn version_dir() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u64..12).prop_map(|v| v.to_string()),
        2 => proptest::sample::select(vec![
            "00", "07", "007", "+3", "-1", " 3", "3 ", "3a", "v3", "\u{0663}", "18446744073709551615",
            "18446744073709551616", "staging-abc", ".tmp", "1e3",
        ]).prop_map(String::from),
        1 => "[0-9]{1,3}",
    ]
}

/// What a version directory holds.
#[derive(Debug, Clone, Copy)]
enum Holds {
    Artifact,
    Nothing,
    ArtifactIsADirectory,
}

fn holds() -> impl Strategy<Value = Holds> {
    prop_oneof![
        4 => Just(Holds::Artifact),
        1 => Just(Holds::Nothing),
        1 => Just(Holds::ArtifactIsADirectory),
    ]
}

fn aliases_file() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => fuzz::json_text(3).prop_map(String::into_bytes),
        2 => proptest::collection::vec(("[a-z]{1,6}", fuzz::json_scalar_text()), 0..4).prop_map(|fields| {
            let fields: Vec<String> = fields.into_iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
            format!("{{{}}}", fields.join(", ")).into_bytes()
        }),
        1 => fuzz::bytes(64),
    ]
}

proptest! {
    #![proptest_config(fuzz::config(0.5))]

    /// Every version the registry lists has an artifact it can open, listed
    /// once, in order; junk directories are skipped, not misread.
    #[test]
    fn listed_versions_have_artifacts(dirs in proptest::collection::vec((version_dir(), holds()), 0..8)) {
        let tmp = tempfile::tempdir().expect("temp dir");
        let reg = LocalRegistry::new(tmp.path());
        let versions_dir = tmp.path().join("m").join("versions");
        fs::create_dir_all(&versions_dir).expect("versions dir");
        let mut made = Vec::new();
        for (name, holds) in &dirs {
            let dir = versions_dir.join(name);
            // A name drawn twice is made once, the first time.
            if fs::create_dir(&dir).is_err() {
                continue;
            }
            made.push((name, holds));
            match holds {
                Holds::Artifact => fs::write(dir.join(ARTIFACT), b"onnx").expect("artifact"),
                Holds::Nothing => {}
                Holds::ArtifactIsADirectory => fs::create_dir(dir.join(ARTIFACT)).expect("dir"),
            }
        }
        let versions = reg.versions("m").map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
        for v in &versions {
            let path = reg.artifact("m", *v).map_err(|e| TestCaseError::fail(format!("listed {v}: {e}")))?;
            prop_assert!(path.is_file());
        }
        for (name, holds) in made {
            if matches!(holds, Holds::Artifact) {
                if let Ok(v) = name.parse::<u64>() {
                    if v.to_string() == *name {
                        prop_assert!(versions.contains(&v), "{name} not listed in {versions:?}");
                    }
                }
            }
        }
    }

    /// Any `aliases.json`: the aliases, or an error naming the file.
    #[test]
    fn aliases_files_are_read_or_named(body in aliases_file()) {
        let tmp = tempfile::tempdir().expect("temp dir");
        let reg = LocalRegistry::new(tmp.path());
        fs::create_dir_all(tmp.path().join("m").join("versions")).expect("versions dir");
        fs::write(tmp.path().join("m").join(ALIASES), &body).expect("aliases");
        match reg.aliases("m") {
            Ok(aliases) => {
                let back: std::collections::BTreeMap<String, u64> =
                    serde_json::from_slice(&body).expect("what was read is JSON");
                prop_assert_eq!(aliases, back);
            }
            Err(e) => {
                prop_assert!(matches!(e, Error::Internal(_)), "{e:?}");
                fuzz::assert_names(&e, &[ALIASES.to_string()])?;
            }
        }
    }
}
