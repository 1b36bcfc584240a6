//! The files of a store directory: its segments, and snapshots to compare before and after a
//! call that must change nothing.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use commlog::LOCK_FILE_NAME;

/// The segment files (`*.log`) directly in `data`, sorted by name.
pub fn segments(data: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(data)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .collect();
    paths.sort();
    paths
}

/// Every entry under `dir`, by path relative to it: a file with its bytes, a directory as `None`.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, into: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(root).unwrap().to_path_buf();
            if path.is_dir() {
                into.insert(relative, None);
                walk(root, &path, into);
            } else {
                into.insert(relative, Some(fs::read(&path).unwrap()));
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(dir, dir, &mut files);
    files
}

/// [`snapshot`] but for the top-level `LOCK`, which any writer's open rewrites with its
/// process id.
pub fn snapshot_without_lock(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut files = snapshot(dir);
    files.remove(Path::new(LOCK_FILE_NAME));
    files
}

/// Checks that the permission bits of `path` are `mode`.
#[cfg(unix)]
pub fn assert_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;

    let actual = fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        actual,
        mode,
        "mode of {}: {actual:o}, expected {mode:o}",
        path.display()
    );
}

/// Copies the directory `from`, with everything under it, to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            fs::copy(&path, &target).unwrap();
        }
    }
}
