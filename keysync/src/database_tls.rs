//! TLS to PostgreSQL: `sslmode` and `sslrootcert` in `DATABASE_URL` (else `PGSSLMODE` and
//! `PGSSLROOTCERT`) read as libpq reads them, and what sqlx is asked to do for each.
//!
//! libpq's rules (PostgreSQL's "SSL Support" chapter, `libpq-connect`, and
//! `fe-connect.c` / `fe-secure-openssl.c`), with where sqlx 0.9 on its own differs:
//! - The mode comes from the URL, else `PGSSLMODE`, else `prefer` (`verify-full` when
//!   `sslrootcert=system`). Another value is an error; sqlx ignores a bad `PGSSLMODE`
//!   and takes any letter case.
//! - The root certificates come from `sslrootcert`, else `PGSSLROOTCERT`, else
//!   `~/.postgresql/root.crt`. When that file exists, every mode that uses TLS checks the
//!   server's certificate against it: `require` then behaves like `verify-ca` (sqlx
//!   checks nothing in `require`), and so does `prefer`, which falls back to plain text
//!   if TLS fails. `verify-ca` and `verify-full` without the file are errors (sqlx
//!   would trust its built-in list).
//! - `sslrootcert=system` trusts the system's roots (where OpenSSL looks, including
//!   `SSL_CERT_FILE` and `SSL_CERT_DIR`), with `verify-full` only.
//! - `allow` tries plain text, then TLS (sqlx: plain text only).
//! - Over a Unix socket there is no TLS, whatever the mode.
//!
//! libpq chooses between plain text and TLS for each connection; for `allow`, and for
//! `prefer` with root certificates, keysync chooses once, with its first connection
//! (see [`crate::database`]), and every pool keeps that choice.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rustls::pki_types::CertificateDer;
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use url::Url;

use crate::ca_file::CaFile;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    /// The mode `value` names, spelt exactly as libpq spells it.
    fn parse(value: &str) -> Option<SslMode> {
        Some(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// `verify-ca` or `verify-full`: root certificates are required.
    fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the certificates that vouch for the server come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCertificates {
    /// A PEM file: `sslrootcert`, `PGSSLROOTCERT` or `~/.postgresql/root.crt`.
    File(PathBuf),
    /// The system's trusted roots (`sslrootcert=system`).
    System,
}

impl fmt::Display for RootCertificates {
    /// As error messages name them: `sslrootcert "/etc/ca.pem"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootCertificates::File(path) => write!(f, "sslrootcert \"{}\"", path.display()),
            RootCertificates::System => {
                f.write_str("the system's trusted roots (sslrootcert=system)")
            }
        }
    }
}

/// A TLS setting that libpq would refuse, or a root certificate file it cannot use.
/// Settings and paths are not secrets; the URL is never repeated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsSettingsError {
    #[error(
        "invalid {setting} value: \"{value}\" (one of disable, allow, prefer, require, \
         verify-ca, verify-full)"
    )]
    InvalidMode {
        setting: &'static str,
        value: String,
    },
    #[error("weak sslmode \"{0}\" may not be used with sslrootcert=system (use \"verify-full\")")]
    WeakModeWithSystemRoots(SslMode),
    #[error(
        "root certificate file \"{}\" does not exist: provide the file, use the system's \
         trusted roots with sslrootcert=system, or change sslmode to disable server \
         certificate verification",
        .0.display()
    )]
    MissingRootFile(PathBuf),
    #[error(
        "could not get home directory to locate root certificate file: name the file with \
         sslrootcert, use the system's trusted roots with sslrootcert=system, or change \
         sslmode to disable server certificate verification"
    )]
    NoHomeDirectory,
    #[error("could not read root certificate file \"{}\": {reason}", path.display())]
    UnreadableRootFile { path: PathBuf, reason: String },
    #[error(
        "sslrootcert=system: no trusted root certificates found on this system ({reason}); \
         set SSL_CERT_FILE or SSL_CERT_DIR"
    )]
    NoSystemRoots { reason: String },
    #[error(
        "hostaddr cannot be used with sslmode=verify-full: keysync would check the \
         certificate against the address, libpq against the host name; put the host name \
         in the URL"
    )]
    HostaddrWithVerifyFull,
}

/// The TLS settings a URL and the environment ask for, checked as libpq checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    mode: SslMode,
    /// `sslrootcert` or `PGSSLROOTCERT`, when set and not empty.
    root_cert: Option<String>,
    /// The URL sets `hostaddr`.
    hostaddr: bool,
}

/// The default root certificate file, under the home directory.
const DEFAULT_ROOT_CERT: &str = ".postgresql/root.crt";

impl TlsSettings {
    /// Reads `sslmode` and `sslrootcert` from `url` (and sqlx's spellings `ssl-mode`,
    /// `ssl-root-cert`, `ssl-ca`; the last one given wins), else from `PGSSLMODE` and
    /// `PGSSLROOTCERT` through `env`.
    pub fn read(
        url: &Url,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<TlsSettings, TlsSettingsError> {
        let mut mode_in_url = None;
        let mut root_cert = None;
        let mut hostaddr = false;
        for (name, value) in url.query_pairs() {
            match &*name {
                "sslmode" | "ssl-mode" => mode_in_url = Some(value.into_owned()),
                "sslrootcert" | "ssl-root-cert" | "ssl-ca" => root_cert = Some(value.into_owned()),
                "hostaddr" => hostaddr = true,
                _ => {}
            }
        }
        let root_cert = root_cert
            .or_else(|| env("PGSSLROOTCERT"))
            .filter(|value| !value.is_empty());
        let system = root_cert.as_deref() == Some("system");
        let (setting, value) = match mode_in_url {
            Some(value) => ("sslmode", Some(value)),
            None => ("PGSSLMODE", env("PGSSLMODE")),
        };
        let mode = match value {
            Some(value) => {
                SslMode::parse(&value).ok_or(TlsSettingsError::InvalidMode { setting, value })?
            }
            None if system => SslMode::VerifyFull,
            None => SslMode::Prefer,
        };
        if system && mode != SslMode::VerifyFull {
            return Err(TlsSettingsError::WeakModeWithSystemRoots(mode));
        }
        if hostaddr && mode == SslMode::VerifyFull {
            return Err(TlsSettingsError::HostaddrWithVerifyFull);
        }
        Ok(TlsSettings {
            mode,
            root_cert,
            hostaddr,
        })
    }

    pub fn mode(&self) -> SslMode {
        self.mode
    }

    /// What to do: which root certificates check the server (`None`: none do), found
    /// on disk as libpq finds them. `over_unix_socket`: the connection does not use TCP,
    /// so it never uses TLS. `env` gives `HOME`.
    pub fn policy(
        &self,
        over_unix_socket: bool,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<TlsPolicy, TlsSettingsError> {
        let plain = TlsPolicy {
            mode: self.mode,
            roots: None,
            attempts: vec![Attempt::Plain],
            ignored_root_file: None,
        };
        if over_unix_socket || self.mode == SslMode::Disable {
            return Ok(plain);
        }
        let named = self.root_cert.as_deref();
        let mut ignored_root_file = None;
        let roots = if named == Some("system") {
            Some(RootCertificates::System)
        } else {
            let path = match named {
                Some(path) => Some(PathBuf::from(path)),
                None => env("HOME")
                    .filter(|home| !home.is_empty())
                    .map(|home| Path::new(&home).join(DEFAULT_ROOT_CERT)),
            };
            match path {
                Some(path) if path.exists() => Some(RootCertificates::File(path)),
                Some(path) if self.mode.verifies() => {
                    return Err(TlsSettingsError::MissingRootFile(path))
                }
                None if self.mode.verifies() => return Err(TlsSettingsError::NoHomeDirectory),
                Some(path) => {
                    // libpq goes on without checking the certificate; say so.
                    ignored_root_file = named.map(|_| path);
                    None
                }
                None => None,
            }
        };
        let tls = |roots: &Option<RootCertificates>, check_host: bool| match roots {
            Some(roots) => Attempt::Verified {
                roots: roots.clone(),
                check_host,
            },
            None => Attempt::Unverified,
        };
        let attempts = match self.mode {
            SslMode::Disable => vec![Attempt::Plain],
            SslMode::Allow => vec![Attempt::Plain, tls(&roots, false)],
            SslMode::Prefer if roots.is_none() => vec![Attempt::IfOffered],
            SslMode::Prefer => vec![tls(&roots, false), Attempt::Plain],
            SslMode::Require | SslMode::VerifyCa => vec![tls(&roots, false)],
            SslMode::VerifyFull => vec![tls(&roots, true)],
        };
        Ok(TlsPolicy {
            mode: self.mode,
            roots,
            attempts,
            ignored_root_file,
        })
    }
}

/// What keysync does to honour a URL's TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPolicy {
    mode: SslMode,
    /// What checks the server's certificate; `None`: nothing does.
    roots: Option<RootCertificates>,
    /// libpq's order of tries; the first that connects is kept.
    attempts: Vec<Attempt>,
    /// A root certificate file the URL named that does not exist, so the certificate is
    /// not checked (libpq's rule for the modes below `verify-ca`).
    ignored_root_file: Option<PathBuf>,
}

impl TlsPolicy {
    pub fn mode(&self) -> SslMode {
        self.mode
    }

    pub fn roots(&self) -> Option<&RootCertificates> {
        self.roots.as_ref()
    }

    /// The ways to connect, in the order libpq tries them.
    pub fn attempts(&self) -> &[Attempt] {
        &self.attempts
    }

    pub fn ignored_root_file(&self) -> Option<&Path> {
        self.ignored_root_file.as_deref()
    }
}

/// One way to connect, as sqlx will be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// No TLS.
    Plain,
    /// TLS if the server offers it, else plain text; the certificate is not checked.
    IfOffered,
    /// TLS; the certificate is not checked.
    Unverified,
    /// TLS; the certificate must chain to `roots` and, with `check_host`, hold the host
    /// name keysync connected to.
    Verified {
        roots: RootCertificates,
        check_host: bool,
    },
}

impl Attempt {
    /// Whether this attempt uses TLS, for messages (`with TLS: ...`).
    pub fn label(&self) -> &'static str {
        match self {
            Attempt::Plain => "without TLS",
            Attempt::IfOffered => "with TLS if offered",
            Attempt::Unverified | Attempt::Verified { .. } => "with TLS",
        }
    }

    /// `options` set for this attempt: sqlx's mode, and the root certificates (read now,
    /// so a missing or empty file is reported before any connection). sqlx 0.9 reads the
    /// file once more, for the first TLS connection, and keeps the TLS configuration it
    /// made in `options` and their clones: every pool then trusts what the file held at
    /// start, and a renewed CA needs a restart.
    pub fn apply(&self, options: PgConnectOptions) -> Result<PgConnectOptions, TlsSettingsError> {
        Ok(match self {
            Attempt::Plain => options.ssl_mode(PgSslMode::Disable),
            Attempt::IfOffered => options.ssl_mode(PgSslMode::Prefer),
            Attempt::Unverified => options.ssl_mode(PgSslMode::Require),
            Attempt::Verified { roots, check_host } => {
                let mode = if *check_host {
                    PgSslMode::VerifyFull
                } else {
                    PgSslMode::VerifyCa
                };
                let options = options.ssl_mode(mode);
                match roots {
                    RootCertificates::File(path) => {
                        check_root_file(path)?;
                        options.ssl_root_cert(path)
                    }
                    RootCertificates::System => options.ssl_root_cert_from_pem(system_roots_pem()?),
                }
            }
        })
    }
}

/// Fails unless `path` holds at least one PEM certificate.
fn check_root_file(path: &Path) -> Result<(), TlsSettingsError> {
    CaFile::read(path)
        .map(drop)
        .map_err(|reason| TlsSettingsError::UnreadableRootFile {
            path: path.to_path_buf(),
            reason,
        })
}

/// The system's trusted roots as one PEM text, as sqlx takes them.
fn system_roots_pem() -> Result<Vec<u8>, TlsSettingsError> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let reason = found.errors.first().map_or_else(
            || "none in the usual places".to_owned(),
            ToString::to_string,
        );
        return Err(TlsSettingsError::NoSystemRoots { reason });
    }
    Ok(to_pem(&found.certs).into_bytes())
}

/// `certificates` as PEM blocks.
fn to_pem(certificates: &[CertificateDer<'_>]) -> String {
    let mut pem = String::new();
    for certificate in certificates {
        let base64 = base64::engine::general_purpose::STANDARD.encode(certificate.as_ref());
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in base64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rustls::pki_types::pem::PemObject;

    use super::*;

    /// A directory with `ca.pem` (a real certificate) and `home/.postgresql/root.crt`.
    struct Files {
        dir: PathBuf,
    }

    impl Files {
        fn new() -> Files {
            static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("keysync-database-tls-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("home/.postgresql")).unwrap();
            let ca = rcgen::generate_simple_self_signed(vec!["ca".to_owned()]).unwrap();
            std::fs::write(dir.join("ca.pem"), ca.cert.pem()).unwrap();
            std::fs::write(dir.join("home/.postgresql/root.crt"), ca.cert.pem()).unwrap();
            std::fs::create_dir_all(dir.join("empty-home")).unwrap();
            Files { dir }
        }

        fn path(&self, name: &str) -> String {
            self.dir.join(name).display().to_string()
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn policy(query: &str, env: &[(&str, &str)]) -> Result<TlsPolicy, TlsSettingsError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let lookup = |name: &str| env.get(name).cloned();
        let url = Url::parse(&format!("postgres://u@db.internal:5432/keysync?{query}")).unwrap();
        TlsSettings::read(&url, &lookup)?.policy(false, &lookup)
    }

    fn file(path: &str) -> RootCertificates {
        RootCertificates::File(PathBuf::from(path))
    }

    fn verified(roots: RootCertificates, check_host: bool) -> Attempt {
        Attempt::Verified { roots, check_host }
    }

    #[test]
    fn the_default_is_prefer_without_checking_unless_a_root_certificate_exists() {
        let files = Files::new();
        let none = policy("", &[("HOME", &files.path("empty-home"))]).unwrap();
        assert_eq!(none.mode(), SslMode::Prefer);
        assert_eq!(none.attempts(), [Attempt::IfOffered]);
        // ~/.postgresql/root.crt exists: TLS checked against it, else plain text.
        let home = policy("", &[("HOME", &files.path("home"))]).unwrap();
        let root = file(&files.path("home/.postgresql/root.crt"));
        assert_eq!(home.roots(), Some(&root));
        assert_eq!(home.attempts(), [verified(root, false), Attempt::Plain]);
        // No home directory: nothing to check with.
        assert_eq!(policy("", &[]).unwrap().attempts(), [Attempt::IfOffered]);
    }

    #[test]
    fn disable_never_uses_tls_nor_looks_for_files() {
        let policy = policy("sslmode=disable&sslrootcert=/nowhere.pem", &[]).unwrap();
        assert_eq!(policy.attempts(), [Attempt::Plain]);
        assert_eq!(policy.roots(), None);
    }

    #[test]
    fn allow_tries_plain_text_first_then_tls() {
        let files = Files::new();
        let empty_home = files.path("empty-home");
        assert_eq!(
            policy("sslmode=allow", &[("HOME", &empty_home)])
                .unwrap()
                .attempts(),
            [Attempt::Plain, Attempt::Unverified]
        );
        let ca = files.path("ca.pem");
        assert_eq!(
            policy(&format!("sslmode=allow&sslrootcert={ca}"), &[])
                .unwrap()
                .attempts(),
            [Attempt::Plain, verified(file(&ca), false)]
        );
    }

    #[test]
    fn require_checks_the_chain_when_a_root_certificate_exists_as_verify_ca() {
        let files = Files::new();
        let ca = files.path("ca.pem");
        let empty_home = files.path("empty-home");
        assert_eq!(
            policy("sslmode=require", &[("HOME", &empty_home)])
                .unwrap()
                .attempts(),
            [Attempt::Unverified]
        );
        assert_eq!(
            policy(&format!("sslmode=require&sslrootcert={ca}"), &[])
                .unwrap()
                .attempts(),
            [verified(file(&ca), false)]
        );
        let home = files.path("home");
        assert_eq!(
            policy("sslmode=require", &[("HOME", &home)])
                .unwrap()
                .attempts(),
            [verified(
                file(&files.path("home/.postgresql/root.crt")),
                false
            )]
        );
        // A named file that does not exist: libpq goes on without checking.
        let missing = files.path("missing.pem");
        let unchecked = policy(&format!("sslmode=require&sslrootcert={missing}"), &[]).unwrap();
        assert_eq!(unchecked.attempts(), [Attempt::Unverified]);
        assert_eq!(unchecked.ignored_root_file(), Some(Path::new(&missing)));
    }

    #[test]
    fn verify_ca_and_verify_full_need_a_root_certificate() {
        let files = Files::new();
        let ca = files.path("ca.pem");
        assert_eq!(
            policy(&format!("sslmode=verify-ca&sslrootcert={ca}"), &[])
                .unwrap()
                .attempts(),
            [verified(file(&ca), false)]
        );
        assert_eq!(
            policy(&format!("sslmode=verify-full&sslrootcert={ca}"), &[])
                .unwrap()
                .attempts(),
            [verified(file(&ca), true)]
        );
        let missing = files.path("missing.pem");
        let error = policy(&format!("sslmode=verify-full&sslrootcert={missing}"), &[]).unwrap_err();
        assert_eq!(
            error,
            TlsSettingsError::MissingRootFile(PathBuf::from(&missing))
        );
        assert!(error.to_string().starts_with(&format!(
            "root certificate file \"{missing}\" does not exist: provide the file"
        )));
        // The default file is looked for, and named when missing.
        let empty_home = files.path("empty-home");
        assert_eq!(
            policy("sslmode=verify-ca", &[("HOME", &empty_home)]).unwrap_err(),
            TlsSettingsError::MissingRootFile(Path::new(&empty_home).join(".postgresql/root.crt"))
        );
        assert_eq!(
            policy("sslmode=verify-ca", &[]).unwrap_err(),
            TlsSettingsError::NoHomeDirectory
        );
    }

    #[test]
    fn sslrootcert_system_means_verify_full_and_only_that() {
        let system = policy("sslrootcert=system", &[]).unwrap();
        assert_eq!(system.mode(), SslMode::VerifyFull);
        assert_eq!(
            system.attempts(),
            [verified(RootCertificates::System, true)]
        );
        for mode in ["require", "verify-ca", "prefer"] {
            let error = policy(&format!("sslmode={mode}&sslrootcert=system"), &[]).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!(
                    "weak sslmode \"{mode}\" may not be used with sslrootcert=system (use \"verify-full\")"
                )
            );
        }
        // Also from the environment.
        assert_eq!(
            policy("", &[("PGSSLROOTCERT", "system")]).unwrap().mode(),
            SslMode::VerifyFull
        );
    }

    #[test]
    fn modes_are_spelt_as_libpq_spells_them() {
        for bad in ["VERIFY-FULL", "verify", "", "true"] {
            let error = policy(&format!("sslmode={bad}"), &[]).unwrap_err();
            assert_eq!(
                error,
                TlsSettingsError::InvalidMode {
                    setting: "sslmode",
                    value: bad.to_owned()
                }
            );
        }
        assert!(policy("sslmode=verify", &[])
            .unwrap_err()
            .to_string()
            .starts_with("invalid sslmode value: \"verify\" (one of disable, allow"));
        // sqlx's other spelling of the parameter is read too.
        assert_eq!(
            policy("ssl-mode=disable", &[]).unwrap().mode(),
            SslMode::Disable
        );
    }

    #[test]
    fn the_environment_counts_only_when_the_url_is_silent() {
        let files = Files::new();
        let ca = files.path("ca.pem");
        let from_env = policy("", &[("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", &ca)]).unwrap();
        assert_eq!(from_env.attempts(), [verified(file(&ca), true)]);
        let url_wins = policy(
            "sslmode=disable",
            &[("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", &ca)],
        )
        .unwrap();
        assert_eq!(url_wins.attempts(), [Attempt::Plain]);
        assert_eq!(
            policy("", &[("PGSSLMODE", "Require")]).unwrap_err(),
            TlsSettingsError::InvalidMode {
                setting: "PGSSLMODE",
                value: "Require".to_owned()
            }
        );
    }

    #[test]
    fn a_unix_socket_never_uses_tls() {
        let url =
            Url::parse("postgres://u@%2Frun%2Fpostgresql/db?sslmode=verify-full&sslrootcert=/x")
                .unwrap();
        let settings = TlsSettings::read(&url, &|_: &str| None).unwrap();
        let policy = settings.policy(true, &|_: &str| None).unwrap();
        assert_eq!(policy.attempts(), [Attempt::Plain]);
    }

    #[test]
    fn hostaddr_is_refused_with_verify_full() {
        assert_eq!(
            policy("sslmode=verify-full&hostaddr=10.0.0.5", &[]).unwrap_err(),
            TlsSettingsError::HostaddrWithVerifyFull
        );
    }

    #[test]
    fn root_files_must_hold_a_certificate() {
        let files = Files::new();
        std::fs::write(files.dir.join("empty.pem"), "not a certificate\n").unwrap();
        let empty = files.path("empty.pem");
        let attempt = verified(file(&empty), true);
        let error = attempt
            .apply(PgConnectOptions::new_without_pgpass())
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("could not read root certificate file \"{empty}\": no PEM certificate in it")
        );
        assert!(verified(file(&files.path("ca.pem")), true)
            .apply(PgConnectOptions::new_without_pgpass())
            .is_ok());
    }

    #[test]
    fn certificates_become_pem_that_parses_back() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca".to_owned()]).unwrap();
        let der = ca.cert.der().clone();
        let pem = to_pem(&[der.clone(), der.clone()]);
        let parsed: Vec<CertificateDer<'_>> = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(parsed, vec![der.clone(), der]);
        assert!(pem.lines().all(|line| line.len() <= 64));
    }
}
