//! A throwaway PostgreSQL cluster on 127.0.0.1 for one test (or one test binary).
//!
//! `initdb` is the slow part, so it runs once per machine into a template directory
//! under the target dir (`target/e2e-pg-template-<major>`), published by an atomic
//! rename so parallel test binaries never see half of it; each [`TestPostgres::start`]
//! copies the template into a fresh directory (in `/dev/shm` when there is room, else
//! the temp dir) and runs `postgres` there as a child [`Process`]. As root (test machines and CI) `initdb` and `postgres` run as the
//! `postgres` OS user, because they refuse to run as root.
//!
//! [`TestPostgres::start_tls_only`] starts a server as managed ones are set up
//! (`rds.force_ssl` and the like): TLS with a certificate the test made, and a
//! `pg_hba.conf` that refuses every connection without it.

use std::fs;
use std::io;
use std::os::unix::fs::{chown, lchown, symlink, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::os;
use crate::paths::{free_port, target_dir};
use crate::process::{Process, Signal};
use crate::scratch::ScratchDir;
use crate::server_start::{self, LogLines};
use crate::test_ca::ServerCertificate;

/// The role every cluster is created with; it can log in without a password.
const USER: &str = "keysync";
/// How long a server may take to accept connections (a noisy 2-core machine).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a fast or immediate shutdown may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How many fresh ports [`TestPostgres::start`] tries when its port gets taken.
const PORT_ATTEMPTS: usize = 10;
/// What the server logs (with `lc_messages=C`).
const LOG_LINES: LogLines = LogLines {
    ready: "database system is ready to accept connections",
    address_in_use: "Address already in use",
};
/// Options of the one `initdb` run; the template directory name does not encode them,
/// so after changing them remove `target/e2e-pg-template-*`.
/// `--wal-segsize=1` (1 MB WAL segments) shrinks the template from 39 to 28 MB, so
/// each copy is faster; `--locale=C` keeps it independent of the machine's locales.
const INITDB_ARGS: &[&str] = &[
    "-U",
    USER,
    "--auth=trust",
    "-E",
    "UTF8",
    "--locale=C",
    "--no-sync",
    "--wal-segsize=1",
];
/// The `pg_hba.conf` of a TLS-only server: TLS connections from loopback are trusted,
/// any connection without TLS is refused.
const TLS_ONLY_HBA: &str = "\
hostssl all all 127.0.0.1/32 trust
hostnossl all all 0.0.0.0/0 reject
";

/// A running PostgreSQL server with its own data directory, stopped and deleted on drop.
///
/// Connect as user `keysync` (no password) to 127.0.0.1 on [`TestPostgres::port`].
#[derive(Debug)]
pub struct TestPostgres {
    installation: &'static Installation,
    port: u16,
    /// The server, or `None` between [`TestPostgres::stop`] and
    /// [`TestPostgres::start_again`]. Declared before `dir` so it stops before the data
    /// directory is removed.
    server: Option<Process>,
    /// Holds `data/`, the cluster's data directory.
    dir: ScratchDir,
    /// Numbers the databases made by [`TestPostgres::create_database`].
    databases_created: AtomicU32,
    /// The server's TLS files when it accepts TLS connections only.
    tls: Option<TlsFiles>,
}

/// Where a TLS-only server's certificate, key and `pg_hba.conf` are (in its directory).
#[derive(Debug)]
struct TlsFiles {
    certificate: PathBuf,
    key: PathBuf,
    hba: PathBuf,
}

impl TestPostgres {
    /// Starts a fresh cluster on a free 127.0.0.1 port and waits until it accepts
    /// connections. Panics with the server log when it cannot.
    pub fn start() -> TestPostgres {
        TestPostgres::start_configured(None)
    }

    /// Same, for a server that accepts TLS connections only, presenting `certificate`
    /// (`ssl=on`, and a `pg_hba.conf` of `hostssl ... trust` and `hostnossl ...
    /// reject`). [`TestPostgres::psql`] still works: psql's default `sslmode=prefer`
    /// uses TLS without checking the certificate.
    pub fn start_tls_only(certificate: &ServerCertificate) -> TestPostgres {
        TestPostgres::start_configured(Some(certificate))
    }

    fn start_configured(certificate: Option<&ServerCertificate>) -> TestPostgres {
        let installation = installation();
        let template = template(installation);
        let dir = ScratchDir::new_in(&clusters_parent(), "postgres")
            .unwrap_or_else(|error| panic!("postgres: cannot create a temp dir: {error}"));
        copy_tree(template, &dir.path().join("data"), installation.server_user).unwrap_or_else(
            |error| {
                panic!(
                    "postgres: cannot copy the template cluster {} into {}: {error}",
                    template.display(),
                    dir.path().display()
                )
            },
        );
        if let Some((uid, gid)) = installation.server_user {
            chown(dir.path(), Some(uid), Some(gid)).unwrap_or_else(|error| {
                panic!("postgres: cannot chown {}: {error}", dir.path().display())
            });
        }
        let tls = certificate.map(|certificate| {
            write_tls_files(dir.path(), certificate, installation.server_user).unwrap_or_else(
                |error| {
                    panic!(
                        "postgres: cannot write TLS files into {}: {error}",
                        dir.path().display()
                    )
                },
            )
        });
        let mut postgres = TestPostgres {
            installation,
            port: 0,
            server: None,
            dir,
            databases_created: AtomicU32::new(0),
            tls,
        };
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            if let Some(server) = postgres.launch(port) {
                postgres.port = port;
                postgres.server = Some(server);
                return postgres;
            }
        }
        panic!(
            "postgres: {PORT_ATTEMPTS} free ports in a row were taken before the server bound them"
        );
    }

    /// The server's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A client program (`pg_dump`, `pg_restore`) of the installation the server runs
    /// from, so that its version matches the server's.
    pub(crate) fn client_program(&self, name: &str) -> PathBuf {
        self.installation.bin_dir.join(name)
    }

    /// The role every cluster is created with.
    pub(crate) fn user(&self) -> &'static str {
        USER
    }

    /// The connection URL of `database`: `postgres://keysync@127.0.0.1:PORT/DATABASE`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates an empty database with a name unique in this cluster and returns its URL.
    pub fn create_database(&self) -> String {
        let number = self.databases_created.fetch_add(1, Ordering::Relaxed);
        let name = format!("keysync_test_{number}");
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// Runs `sql` in `database` with `psql` and returns its output: rows one a line,
    /// columns separated by `|`, no headers. Panics with psql's message on any error.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let output = Command::new(&self.installation.psql)
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", USER, "-d", database, "-c", sql])
            .env("PGCONNECT_TIMEOUT", "30")
            .env_remove("PGOPTIONS")
            .output()
            .unwrap_or_else(|error| {
                panic!("cannot run {}: {error}", self.installation.psql.display())
            });
        if !output.status.success() {
            panic!(
                "psql in database {database:?} on port {} failed ({}) running {sql:?}:\n{}{}",
                self.port,
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
            );
        }
        let text = String::from_utf8_lossy(&output.stdout);
        text.strip_suffix('\n').unwrap_or(&text).to_owned()
    }

    /// Stops the server with a fast shutdown (clients are disconnected, data is kept),
    /// for outage tests. Does nothing if it is already stopped.
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.signal(Signal::Int);
            if server.wait_exit(STOP_TIMEOUT).is_none() {
                panic!(
                    "postgres on port {}: no fast shutdown within {STOP_TIMEOUT:?}:\n{}",
                    self.port,
                    server.log()
                );
            }
        }
    }

    /// Starts the stopped server again on the same port with the same data and waits
    /// until it accepts connections. Does nothing if it is running.
    pub fn start_again(&mut self) {
        if self.server.is_some() {
            return;
        }
        let port = self.port;
        let server = server_start::relaunch("postgres", port, START_TIMEOUT, || self.launch(port));
        self.server = Some(server);
    }

    /// Starts `postgres` on `port` and waits until it is ready; `None` if the port is
    /// taken. Panics with the server log on any other failure.
    fn launch(&self, port: u16) -> Option<Process> {
        let installation = self.installation;
        let mut command = Command::new(installation.bin_dir.join("postgres"));
        command
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-p")
            .arg(port.to_string())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                // TCP only: no socket file, so no path-length or permission trouble.
                "-c",
                "unix_socket_directories=",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "lc_messages=C",
            ])
            .current_dir(self.dir.path())
            .env("LC_ALL", "C");
        if let Some(tls) = &self.tls {
            command.args(["-c", "ssl=on", "-c"]);
            command.arg(setting("ssl_cert_file", &tls.certificate));
            command.arg("-c").arg(setting("ssl_key_file", &tls.key));
            command.arg("-c").arg(setting("hba_file", &tls.hba));
        }
        // Benchmarks that count PostgreSQL's statements ask for pg_stat_statements
        // (PostgreSQL's contrib, shipped in Debian's server package); tests do not.
        if std::env::var_os(STAT_STATEMENTS_ENV).is_some() {
            command.args(["-c", "shared_preload_libraries=pg_stat_statements"]);
        }
        if let Some((uid, gid)) = installation.server_user {
            command.uid(uid).gid(gid);
        }
        let server = Process::spawn(&format!("postgres:{port}"), command);
        server_start::wait_until_ready(server, &LOG_LINES, START_TIMEOUT)
    }
}

/// `name=path`, a server setting naming a file.
fn setting(name: &str, path: &Path) -> String {
    format!("{name}={}", path.display())
}

/// Writes `certificate`, its key and [`TLS_ONLY_HBA`] into `dir/tls`, owned by `owner`
/// when set: PostgreSQL refuses a key file that others may read.
fn write_tls_files(
    dir: &Path,
    certificate: &ServerCertificate,
    owner: Option<(u32, u32)>,
) -> io::Result<TlsFiles> {
    let tls_dir = dir.join("tls");
    fs::create_dir(&tls_dir)?;
    let files = TlsFiles {
        certificate: tls_dir.join("server.crt"),
        key: tls_dir.join("server.key"),
        hba: tls_dir.join("pg_hba.conf"),
    };
    fs::write(&files.certificate, &certificate.certificate_pem)?;
    fs::write(&files.key, &certificate.key_pem)?;
    fs::set_permissions(&files.key, fs::Permissions::from_mode(0o600))?;
    fs::write(&files.hba, TLS_ONLY_HBA)?;
    if let Some((uid, gid)) = owner {
        for path in [&tls_dir, &files.certificate, &files.key, &files.hba] {
            chown(path, Some(uid), Some(gid))?;
        }
    }
    Ok(files)
}

/// Set (to anything) to load `pg_stat_statements` into the servers this harness starts.
pub const STAT_STATEMENTS_ENV: &str = "KEYSYNC_TEST_PG_STAT_STATEMENTS";

/// The database a URL of [`TestPostgres::create_database`] or [`TestPostgres::url`]
/// names: what follows its last `/`.
pub fn database_of(url: &str) -> &str {
    url.rsplit_once('/').map_or(url, |(_, database)| database)
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if let Some(server) = self.server.as_mut() {
            // Immediate shutdown: nothing in a throwaway cluster is worth a checkpoint.
            server.signal(Signal::Quit);
            let _ = server.wait_exit(STOP_TIMEOUT);
        }
        // Dropping `server` terminates it if it ignored SIGQUIT; then `dir` goes.
    }
}

/// Where clusters live: `/dev/shm` when it is a tmpfs with room to spare, because copying
/// the template there takes a tenth of the time it takes on a disk; else the temp dir.
fn clusters_parent() -> PathBuf {
    const NEEDED: u64 = 1 << 30;
    let shm = Path::new("/dev/shm");
    if shm.is_dir() && os::available_bytes(shm).is_some_and(|bytes| bytes >= NEEDED) {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// The PostgreSQL installation the tests use, found once per test binary.
#[derive(Debug)]
struct Installation {
    /// Directory of `initdb` and `postgres`.
    bin_dir: PathBuf,
    /// The `psql` client.
    psql: PathBuf,
    /// Major version, e.g. "15"; names the template directory.
    major: String,
    /// uid and gid to run the server as: the `postgres` user when we are root.
    server_user: Option<(u32, u32)>,
}

fn installation() -> &'static Installation {
    static INSTALLATION: OnceLock<Installation> = OnceLock::new();
    INSTALLATION.get_or_init(|| {
        let bin_dir = find_bin_dir();
        let major = major_version(&bin_dir);
        let psql = [bin_dir.join("psql"), PathBuf::from("/usr/bin/psql")]
            .into_iter()
            .find(|path| path.is_file())
            .unwrap_or_else(|| PathBuf::from("psql"));
        let server_user = os::is_root().then(|| {
            os::user_ids("postgres").unwrap_or_else(|| {
                panic!(
                    "running as root, but there is no `postgres` OS user to run initdb and \
                     postgres as (they refuse to run as root): apt-get install postgresql"
                )
            })
        });
        Installation {
            bin_dir,
            psql,
            major,
            server_user,
        }
    })
}

/// `PG_BIN_DIR`, else the highest `/usr/lib/postgresql/<version>/bin` with an `initdb`.
fn find_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR").filter(|dir| !dir.is_empty()) {
        let dir = PathBuf::from(dir);
        if !dir.join("initdb").is_file() {
            panic!("PG_BIN_DIR={} has no initdb", dir.display());
        }
        return dir;
    }
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<Vec<u32>>>()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL server binaries not found (no {}/*/bin/initdb; or set PG_BIN_DIR): \
             apt-get install postgresql (make test installs it)",
            root.display()
        ),
    }
}

/// The major version reported by `postgres --version` ("postgres (PostgreSQL) 15.14 ...").
fn major_version(bin_dir: &Path) -> String {
    let postgres = bin_dir.join("postgres");
    let output = Command::new(&postgres)
        .arg("--version")
        .output()
        .unwrap_or_else(|error| panic!("cannot run {} --version: {error}", postgres.display()));
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_once("(PostgreSQL)")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|version| version.split('.').next())
        .filter(|major| !major.is_empty() && major.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            panic!(
                "cannot read a version from `{} --version`: {text:?}",
                postgres.display()
            )
        })
}

/// The cached template cluster, made by `initdb` if no test binary has made it yet.
fn template(installation: &Installation) -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let template = target_dir().join(format!("e2e-pg-template-{}", installation.major));
        if !template.join("PG_VERSION").is_file() {
            build_template(installation, &template);
        }
        template
    })
}

/// Runs `initdb` in a temp dir and publishes the result at `template` by renaming a
/// complete copy into place; if another test binary got there first, its copy is used.
fn build_template(installation: &Installation, template: &Path) {
    let scratch = ScratchDir::new("initdb")
        .unwrap_or_else(|error| panic!("initdb: cannot create a temp dir: {error}"));
    if let Some((uid, gid)) = installation.server_user {
        chown(scratch.path(), Some(uid), Some(gid)).unwrap_or_else(|error| {
            panic!("initdb: cannot chown {}: {error}", scratch.path().display())
        });
    }
    let data = scratch.path().join("data");
    let initdb = installation.bin_dir.join("initdb");
    let mut command = Command::new(&initdb);
    command
        .arg("-D")
        .arg(&data)
        .args(INITDB_ARGS)
        .current_dir(scratch.path())
        .env("LC_ALL", "C");
    if let Some((uid, gid)) = installation.server_user {
        command.uid(uid).gid(gid);
    }
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", initdb.display()));
    if !output.status.success() {
        panic!(
            "{} {INITDB_ARGS:?} failed ({}):\n{}{}",
            initdb.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
    }

    let parent = template
        .parent()
        .expect("the template directory has a parent");
    fs::create_dir_all(parent)
        .unwrap_or_else(|error| panic!("cannot create {}: {error}", parent.display()));
    let file_name = template
        .file_name()
        .expect("the template directory has a name")
        .to_string_lossy();
    let partial = parent.join(format!(".{file_name}.partial-{}", std::process::id()));
    let _ = fs::remove_dir_all(&partial);
    copy_tree(&data, &partial, None).unwrap_or_else(|error| {
        panic!(
            "cannot copy the new cluster to {}: {error}",
            partial.display()
        )
    });
    if let Err(error) = fs::rename(&partial, template) {
        let _ = fs::remove_dir_all(&partial);
        if !template.join("PG_VERSION").is_file() {
            panic!(
                "cannot publish the template cluster at {} ({error}); remove that directory",
                template.display()
            );
        }
    }
}

/// Copies the directory tree `source` to `destination` (which must not exist), keeping
/// permission bits, and gives every copy to `owner` (uid, gid) when set.
fn copy_tree(source: &Path, destination: &Path, owner: Option<(u32, u32)>) -> io::Result<()> {
    let (uid, gid) = owner.unzip();
    fs::create_dir(destination)?;
    let mode = fs::metadata(source)?.permissions().mode();
    fs::set_permissions(destination, fs::Permissions::from_mode(mode))?;
    if owner.is_some() {
        chown(destination, uid, gid)?;
    }
    for entry in fs::read_dir(source)? {
        let entry = entry?;
        let from = entry.path();
        let to = destination.join(entry.file_name());
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            copy_tree(&from, &to, owner)?;
        } else if file_type.is_symlink() {
            symlink(fs::read_link(&from)?, &to)?;
            if owner.is_some() {
                lchown(&to, uid, gid)?;
            }
        } else {
            fs::copy(&from, &to)?;
            if owner.is_some() {
                chown(&to, uid, gid)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_what_follows_the_last_slash() {
        assert_eq!(
            database_of("postgres://keysync@127.0.0.1:5432/keysync_test_3"),
            "keysync_test_3"
        );
        assert_eq!(database_of("keysync_test_3"), "keysync_test_3");
    }
}
