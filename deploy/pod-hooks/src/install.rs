//! `install`: copies what the keysync image carries for the gateway container into the
//! pod's volumes: this program itself (Envoy's `preStop` runs it from there) and the
//! filter built from the same commit as keysync, `plugin.wasm` or the native filter's
//! `libkeysync_filter_native.so`. Each file is written beside its destination and
//! renamed into place, so a container never sees half a file.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The filter's file name, beside this program in the image and in the volume.
pub const WASM_NAME: &str = "plugin.wasm";
/// The native filter's file name, beside this program in the image and in the volume:
/// Envoy loads `lib<name>.so` for the module `name` (`keysync_filter_native`) from
/// `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`.
pub const NATIVE_NAME: &str = "libkeysync_filter_native.so";
/// This program's file name in the hooks volume.
pub const HOOKS_NAME: &str = "keysync-pod-hooks";

/// Where the copies go; `None` skips that file.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Destinations {
    /// The folder that gets this program.
    pub hooks: Option<PathBuf>,
    /// The folder that gets `plugin.wasm`.
    pub wasm: Option<PathBuf>,
    /// The folder that gets the native filter.
    pub native: Option<PathBuf>,
}

/// One file put in place.
#[derive(Debug, PartialEq, Eq)]
pub struct Installed {
    pub path: PathBuf,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} has no parent folder")]
    NoFolder(PathBuf),
}

/// Installs the files `to` asks for. `program` is this program's own path: the
/// filters are the files beside it.
pub fn install(program: &Path, to: &Destinations) -> Result<Vec<Installed>, InstallError> {
    let mut installed = Vec::new();
    for (folder, name) in [(&to.wasm, WASM_NAME), (&to.native, NATIVE_NAME)] {
        if let Some(folder) = folder {
            let beside = program
                .parent()
                .ok_or_else(|| InstallError::NoFolder(program.to_path_buf()))?;
            // Read-only: Envoy reads (and maps) a filter, nobody writes it.
            installed.push(copy_file(&beside.join(name), folder, name, 0o444)?);
        }
    }
    if let Some(folder) = &to.hooks {
        installed.push(copy_file(program, folder, HOOKS_NAME, 0o555)?);
    }
    Ok(installed)
}

/// Copies `source` to `folder/name` with `mode`: written to a temporary name in that
/// folder, flushed, then renamed.
fn copy_file(
    source: &Path,
    folder: &Path,
    name: &str,
    mode: u32,
) -> Result<Installed, InstallError> {
    let data = fs::read(source).map_err(|source_error| InstallError::Read {
        path: source.to_path_buf(),
        source: source_error,
    })?;
    let path = folder.join(name);
    let partial = folder.join(format!(".{name}.partial"));
    let write = |target: &Path| -> std::io::Result<()> {
        let mut file = fs::File::create(target)?;
        file.write_all(&data)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        fs::rename(target, &path)
    };
    write(&partial).map_err(|source| InstallError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(Installed {
        path,
        bytes: data.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("keysync-pod-hooks-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn installs_the_program_and_the_wasm_beside_it_with_their_modes() {
        let image = scratch("image");
        fs::write(image.join(HOOKS_NAME), b"program").unwrap();
        fs::write(image.join(WASM_NAME), b"\0asm module").unwrap();
        let (hooks, wasm) = (scratch("hooks"), scratch("wasm"));
        let to = Destinations {
            hooks: Some(hooks.clone()),
            wasm: Some(wasm.clone()),
            native: None,
        };

        let installed = install(&image.join(HOOKS_NAME), &to).unwrap();

        assert_eq!(
            installed,
            vec![
                Installed {
                    path: wasm.join(WASM_NAME),
                    bytes: 11
                },
                Installed {
                    path: hooks.join(HOOKS_NAME),
                    bytes: 7
                },
            ]
        );
        assert_eq!(fs::read(wasm.join(WASM_NAME)).unwrap(), b"\0asm module");
        assert_eq!(fs::read(hooks.join(HOOKS_NAME)).unwrap(), b"program");
        let mode = |path: PathBuf| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(wasm.join(WASM_NAME)), 0o444);
        assert_eq!(mode(hooks.join(HOOKS_NAME)), 0o555);
        assert!(!wasm.join(".plugin.wasm.partial").exists());
    }

    #[test]
    fn installs_the_native_filter_beside_it_read_only() {
        let image = scratch("native-image");
        fs::write(image.join(HOOKS_NAME), b"program").unwrap();
        fs::write(image.join(NATIVE_NAME), b"\x7fELF module").unwrap();
        fs::write(image.join(WASM_NAME), b"\0asm module").unwrap();
        let native = scratch("native");
        let to = Destinations {
            native: Some(native.clone()),
            ..Destinations::default()
        };

        let installed = install(&image.join(HOOKS_NAME), &to).unwrap();

        assert_eq!(
            installed,
            vec![Installed {
                path: native.join(NATIVE_NAME),
                bytes: 11
            }]
        );
        assert_eq!(
            fs::read(native.join(NATIVE_NAME)).unwrap(),
            b"\x7fELF module"
        );
        let mode = fs::metadata(native.join(NATIVE_NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o444);
        assert!(!native.join(WASM_NAME).exists(), "only what was asked");
    }

    #[test]
    fn installs_only_what_is_asked() {
        let image = scratch("only-image");
        fs::write(image.join(HOOKS_NAME), b"program").unwrap();
        let hooks = scratch("only-hooks");
        let to = Destinations {
            hooks: Some(hooks.clone()),
            ..Destinations::default()
        };

        let installed = install(&image.join(HOOKS_NAME), &to).unwrap();

        assert_eq!(installed.len(), 1);
        assert!(hooks.join(HOOKS_NAME).exists());
    }

    #[test]
    fn a_missing_wasm_is_an_error_naming_its_path() {
        let image = scratch("no-wasm");
        fs::write(image.join(HOOKS_NAME), b"program").unwrap();
        let to = Destinations {
            wasm: Some(scratch("no-wasm-dest")),
            ..Destinations::default()
        };

        let error = install(&image.join(HOOKS_NAME), &to)
            .unwrap_err()
            .to_string();

        assert!(
            error.starts_with(&format!("cannot read {}", image.join(WASM_NAME).display())),
            "{error}"
        );
    }
}
