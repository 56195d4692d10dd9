//! Helpers shared by the commands that run the project's programs as
//! separate processes (`demo`, `soak`, `fuzz`).

use std::path::{Path, PathBuf};

/// The cargo target directory of builds run in `root` (as xtask runs
/// them): `CARGO_TARGET_DIR` (a relative one is taken from `root`, as cargo
/// does there), or `target/` in the workspace.
pub(crate) fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| if d.is_relative() { root.join(d) } else { d })
        .unwrap_or_else(|| root.join("target"))
}

/// Creates a new private (0700) directory `<temp>/<prefix>-<our pid>`.
pub(crate) fn private_dir(prefix: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    // The mode given to mkdir is reduced by the umask; make sure.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dirs_are_0700_and_new() {
        use std::os::unix::fs::PermissionsExt;
        let dir = private_dir("xtask-procs-test").unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        // A second one with the same name cannot be created: never reuse a
        // directory someone else may have prepared.
        let again = private_dir("xtask-procs-test");
        std::fs::remove_dir(&dir).unwrap();
        assert_eq!(mode, 0o700);
        assert!(again.is_err());
    }
}
