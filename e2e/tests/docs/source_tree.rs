//! The repository's own files, as the documentation checks read them: the tree under the
//! workspace root without build outputs (`target/`, `node_modules/`), hidden folders
//! (`.git`, `.venv`, `.run`, ...) and symbolic links.

use std::fs;
use std::path::{Component, Path, PathBuf};

/// The files under `root` that `wanted` accepts, as paths relative to `root`, sorted.
pub fn files(root: &Path, wanted: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut folders = vec![PathBuf::new()];
    while let Some(folder) = folders.pop() {
        let entries = fs::read_dir(root.join(&folder))
            .unwrap_or_else(|error| panic!("cannot list {}: {error}", folder.display()));
        for entry in entries {
            let entry = entry.expect("a readable folder entry");
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let path = folder.join(name.as_ref());
            let kind = entry.file_type().expect("a folder entry's type");
            if kind.is_dir() {
                if !name.starts_with('.') && name != "target" && name != "node_modules" {
                    folders.push(path);
                }
            } else if kind.is_file() && wanted(&path) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Whether `path` ends in `.extension`.
pub fn has_extension(path: &Path, extension: &str) -> bool {
    path.extension().is_some_and(|e| e == extension)
}

/// `path` with `.` and `..` resolved by its text alone; `None` when it climbs above its
/// start.
pub fn normalized(path: &Path) -> Option<PathBuf> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Normal(part) => parts.push(part),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_resolved_without_leaving_the_root() {
        assert_eq!(
            normalized(Path::new("docs/../bench/./RESULTS.md")),
            Some(PathBuf::from("bench/RESULTS.md"))
        );
        assert_eq!(normalized(Path::new("docs/../../outside.md")), None);
    }
}
