//! Files and folders the service creates are readable by its user only
//! (API.md, "Configuration"): the data folder, the SQLite database (whose
//! `-wal` and `-shm` SQLite creates with the database file's mode), the
//! generated keys, the mail folder. Created with the mode set from the start,
//! so there is no moment when another user could open them.

use std::io;
use std::path::Path;

/// Creates `dir` and any missing parents with mode 0700. Folders that exist
/// already are left as they are (an operator may have chosen their mode).
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Options that create a new file with mode 0600 (and fail if it exists).
pub fn create_new_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Makes sure `path` exists, creating it empty with mode 0600 if it does not.
/// An existing file is left alone; `true` if it was created.
pub fn ensure_file(path: &Path) -> io::Result<bool> {
    match create_new_options().open(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether users other than the owner may read `path` (for a warning).
pub fn readable_by_others(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("exists")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn created_folders_and_files_are_private() {
        let root = tempfile::tempdir().unwrap();
        let nested = root.path().join("a/b");
        create_dir_all(&nested).unwrap();
        assert_eq!(mode(&root.path().join("a")), 0o700);
        assert_eq!(mode(&nested), 0o700);
        let file = nested.join("f");
        assert!(ensure_file(&file).unwrap());
        assert!(!ensure_file(&file).unwrap());
        assert_eq!(mode(&file), 0o600);
        assert!(!readable_by_others(&file));
    }
}
