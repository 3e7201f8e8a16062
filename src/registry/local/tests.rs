use super::*;

#[test]
fn a_read_only_registry_refuses_writes_and_names_the_fix() {
    let path = Path::new("/opt/podium/models/fraud");
    for kind in [
        std::io::ErrorKind::ReadOnlyFilesystem,
        std::io::ErrorKind::PermissionDenied,
    ] {
        let err = io_error("open the registry lock", path, kind.into());
        let Error::Refused(message) = err else {
            panic!("{kind:?} should refuse, got {err:?}");
        };
        assert!(message.contains("/opt/podium/models/fraud"), "{message}");
        assert!(message.contains("PODIUM_REGISTRY"), "{message}");
    }
    let other = io_error("lock", path, std::io::ErrorKind::Other.into());
    assert!(matches!(other, Error::Internal(_)), "{other:?}");
}

fn registry_with_file() -> (tempfile::TempDir, LocalRegistry, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let reg = LocalRegistry::new(tmp.path().join("reg"));
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fraud/v1.onnx");
    (tmp, reg, file)
}

#[test]
fn register_assigns_increasing_versions() {
    let (_tmp, reg, file) = registry_with_file();
    assert_eq!(reg.register("fraud", &file).unwrap(), 1);
    assert_eq!(reg.register("fraud", &file).unwrap(), 2);
    assert_eq!(reg.versions("fraud").unwrap(), vec![1, 2]);
    assert_eq!(reg.models().unwrap(), vec!["fraud".to_string()]);
    assert_eq!(
        fs::read(reg.artifact("fraud", 2).unwrap()).unwrap(),
        fs::read(&file).unwrap()
    );
}

#[test]
fn models_with_external_data_are_refused_with_the_fix() {
    let (tmp, reg, file) = registry_with_file();
    let split = tmp.path().join("split.onnx");
    let bytes = crate::registry::external_data::with_external_tensor(
        &fs::read(&file).unwrap(),
        "split.onnx.data",
    );
    fs::write(&split, bytes).unwrap();
    let err = reg.register("fraud", &split).unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("external data files (split.onnx.data)")
            && message.contains("save_as_external_data=False"),
        "{message}"
    );
    assert!(reg.models().unwrap().is_empty());
}

#[test]
fn only_checked_models_are_registered() {
    let (tmp, reg, _) = registry_with_file();
    let junk = tmp.path().join("junk.onnx");
    fs::write(&junk, b"not really onnx").unwrap();
    let err = reg.register("fraud", &junk).unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    assert!(err.to_string().contains("is not an ONNX model"), "{err}");
    assert!(matches!(
        reg.register("fraud", tmp.path()),
        Err(Error::InvalidInput(_))
    ));
    assert!(reg.models().unwrap().is_empty());
}

#[cfg(unix)]
#[test]
fn artifacts_are_not_world_readable() {
    use std::os::unix::fs::PermissionsExt;
    let (_tmp, reg, file) = registry_with_file();
    reg.register("fraud", &file).unwrap();
    let mode = fs::metadata(reg.artifact("fraud", 1).unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o137, 0, "mode {mode:o} is looser than 0640");
}

#[test]
fn aliases_set_get_delete() {
    let (_tmp, reg, file) = registry_with_file();
    reg.register("fraud", &file).unwrap();
    reg.register("fraud", &file).unwrap();
    reg.set_alias("fraud", "champion", 1).unwrap();
    reg.set_alias("fraud", "champion", 2).unwrap();
    reg.set_alias("fraud", "challenger", 1).unwrap();
    let aliases = reg.aliases("fraud").unwrap();
    assert_eq!(aliases["champion"], 2);
    assert_eq!(aliases["challenger"], 1);
    reg.delete_alias("fraud", "challenger").unwrap();
    assert!(!reg.aliases("fraud").unwrap().contains_key("challenger"));
    assert!(matches!(
        reg.delete_alias("fraud", "challenger"),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        reg.set_alias("fraud", "x", 9),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        reg.set_alias("fraud", "latest", 1),
        Err(Error::InvalidInput(_))
    ));
    // No temporary files are left behind.
    let leftovers: Vec<_> = fs::read_dir(reg.root().join("fraud"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn hand_written_alias_names_are_checked_and_the_file_named() {
    let (_tmp, reg, file) = registry_with_file();
    reg.register("fraud", &file).unwrap();
    let path = reg.root().join("fraud").join(ALIASES);
    fs::write(&path, r#"{"champion": 1, "champiön": 1}"#).unwrap();
    let err = reg.aliases("fraud").unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}: invalid alias \"champiön\"", path.display()))
            && err.contains("ASCII"),
        "{err}"
    );
    fs::write(&path, r#"{"champion": 1}"#).unwrap();
    assert_eq!(reg.aliases("fraud").unwrap()["champion"], 1);
}

#[test]
fn a_missing_version_is_told_in_the_local_registry_s_words() {
    let (_tmp, reg, _) = registry_with_file();
    let why = reg.unlisted_version("fraud", 2);
    assert!(
        why.starts_with("aliases.json points at version 2, which has no model file (")
            && why.contains("fraud/versions/2/model.onnx is missing")
            && !why.contains("READY"),
        "{why}"
    );
}

#[cfg(unix)]
#[test]
fn links_out_of_the_root_are_not_followed_and_links_inside_work() {
    use std::os::unix::fs::symlink;
    let (tmp, reg, file) = registry_with_file();
    reg.register("fraud", &file).unwrap();
    let versions = reg.root().join("fraud").join("versions");
    // Inside the root: a version directory linked to another one.
    symlink(versions.join("1"), versions.join("2")).unwrap();
    assert_eq!(reg.versions("fraud").unwrap(), vec![1, 2]);
    assert!(reg.artifact("fraud", 2).is_ok());
    // Out of the root: a version directory, and a whole model.
    let outside = tmp.path().join("elsewhere");
    fs::create_dir_all(outside.join("versions").join("1")).unwrap();
    fs::copy(&file, outside.join("versions").join("1").join(ARTIFACT)).unwrap();
    symlink(outside.join("versions").join("1"), versions.join("3")).unwrap();
    let err = reg.artifact("fraud", 3).unwrap_err();
    assert!(matches!(err, Error::Refused(_)), "{err:?}");
    let why = err.to_string();
    assert!(
        why.starts_with(&format!(
            "{} is a symbolic link to {}, outside the registry root",
            versions.join("3").display(),
            fs::canonicalize(outside.join("versions").join("1"))
                .unwrap()
                .display()
        )),
        "{why}"
    );
    symlink(&outside, reg.root().join("linked")).unwrap();
    assert_eq!(reg.models().unwrap(), vec!["fraud".to_string()]);
}

#[test]
fn non_canonical_version_directories_are_skipped() {
    // Found by `fuzz::listed_versions_have_artifacts`: "00" was listed as
    // version 0, whose artifact then could not be found.
    let (_tmp, reg, file) = registry_with_file();
    reg.register("fraud", &file).unwrap();
    let versions = reg.root().join("fraud").join("versions");
    for junk in ["00", "01", "+2"] {
        fs::create_dir(versions.join(junk)).unwrap();
        fs::write(versions.join(junk).join(ARTIFACT), b"x").unwrap();
    }
    assert_eq!(reg.versions("fraud").unwrap(), vec![1]);
    assert!(reg.artifact("fraud", 1).is_ok());
}

#[test]
fn escaping_names_are_refused_everywhere() {
    let (tmp, reg, file) = registry_with_file();
    for bad in ["..", "../x", "/etc", "a/b"] {
        assert!(
            matches!(reg.register(bad, &file), Err(Error::InvalidInput(_))),
            "{bad}"
        );
        assert!(reg.versions(bad).is_err(), "{bad}");
        assert!(reg.artifact(bad, 1).is_err(), "{bad}");
    }
    assert!(!tmp.path().join("x").exists());
    assert!(matches!(reg.versions("nope"), Err(Error::NotFound(_))));
}
