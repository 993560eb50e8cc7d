//! Running the CLI commands: validate the arguments, touch the database, and render
//! the result as text or JSON.
//!
//! Arguments are checked before connecting, so misuse fails fast and the same way with
//! or without a database. Output goes to a writer the caller flushes only on success,
//! so a failed command prints nothing but its error.

use std::io::{self, Write};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::Serialize;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::api_key::{GeneratedKey, KeyEnvironment};
use crate::change_listener::PgConnector;
use crate::cli::LimitArgs;
use crate::cli::{Cli, Command, KeysCommand, OrgsCommand, Output};
use crate::config::{ConfigError, ProcessEnvironment, ServeConfig};
use crate::database::{self, DatabaseError};
use crate::keys::{self, KeyError, ListedKey, NewKey, OldKeyFate, Revocation, Rotation};
use crate::limits::{self, KeyLimit, LimitChange, LimitError, OrgLimit};
use crate::loader::PgLoader;
use crate::orgs::{self, OrgError, Organization};
use crate::rate_limit::{RateLimit, MAX_LIMIT_VALUE};
use crate::server::{self, ServerError};
use crate::{shutdown, table};

/// Longest name the schema accepts.
const MAX_NAME_CHARS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("no database URL: set DATABASE_URL or pass --database-url")]
    NoDatabaseUrl,
    #[error("invalid {what} '{value}': not a UUID")]
    InvalidId { what: &'static str, value: String },
    #[error("invalid {what} name: {reason}")]
    InvalidName {
        what: &'static str,
        reason: &'static str,
    },
    #[error("invalid {flag} '{value}': {reason}")]
    InvalidDuration {
        flag: &'static str,
        value: String,
        reason: String,
    },
    #[error(transparent)]
    Database(#[from] DatabaseError),
    #[error(transparent)]
    Org(#[from] OrgError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("invalid {flag} '{value}': expected a whole number from {min} to {MAX_LIMIT_VALUE}")]
    InvalidLimitValue {
        flag: &'static str,
        value: String,
        min: u32,
    },
    #[error("{0}")]
    LimitUsage(&'static str),
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen for {what} on {addr}: {cause}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        cause: io::Error,
    },
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("cannot write output: {0}")]
    Output(#[from] io::Error),
}

/// Runs one command. `out` receives what the command prints on success.
pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<(), CommandError> {
    let url = cli.database_url;
    match cli.command {
        Command::Migrate => {
            let pool = connect(url).await?;
            database::migrate(&pool).await?;
            writeln!(out, "migrations applied")?;
        }
        Command::Orgs(OrgsCommand::Create { name, id, output }) => {
            let name = parse_name("organization", &name)?;
            let id = match id {
                Some(id) => parse_id("org id", &id)?,
                None => Uuid::new_v4(),
            };
            let pool = connect(url).await?;
            let org = orgs::create(&pool, id, &name).await?;
            print_created_org(out, &org, output)?;
        }
        Command::Orgs(OrgsCommand::List { output }) => {
            let pool = connect(url).await?;
            let orgs = orgs::list(&pool).await?;
            print_orgs(out, &orgs, output)?;
        }
        Command::Orgs(OrgsCommand::SetLimit {
            org_id,
            limit,
            output,
        }) => {
            let org_id = parse_id("org id", &org_id)?;
            let change = parse_limit_change(&limit)?;
            let pool = connect(url).await?;
            let limit = limits::set_org_limit(&pool, org_id, change).await?;
            print_org_limit(out, &limit, output)?;
        }
        Command::Keys(KeysCommand::Create {
            org_id,
            name,
            env,
            expires_in,
            output,
        }) => {
            let org_id = parse_id("org id", &org_id)?;
            let name = parse_name("key", &name)?;
            let expires_at = expires_in
                .map(|text| parse_expiry(&text, Utc::now()))
                .transpose()?;
            let pool = connect(url).await?;
            create_key(&pool, out, org_id, name, env, expires_at, output).await?;
        }
        Command::Keys(KeysCommand::List { org_id, output }) => {
            let org_id = parse_id("org id", &org_id)?;
            let pool = connect(url).await?;
            let keys = keys::list_for_org(&pool, org_id).await?;
            print_keys(out, &keys, Utc::now(), output)?;
        }
        Command::Keys(KeysCommand::Rotate {
            key_id,
            grace,
            expires_in,
            output,
        }) => {
            let old_id = parse_id("key id", &key_id)?;
            let now = Utc::now();
            let fate = match parse_grace(&grace, now)? {
                None => OldKeyFate::RevokeNow,
                Some(at) => OldKeyFate::ExpireBy(at),
            };
            let expires_at = expires_in
                .map(|text| parse_expiry(&text, now))
                .transpose()?;
            let pool = connect(url).await?;
            let rotation = keys::rotate(&pool, old_id, Uuid::new_v4(), expires_at, fate).await?;
            print_rotation(out, &rotation, output)?;
        }
        Command::Keys(KeysCommand::Revoke { key_id }) => {
            let key_id = parse_id("key id", &key_id)?;
            let pool = connect(url).await?;
            match keys::revoke(&pool, key_id).await? {
                Revocation::Revoked => writeln!(out, "revoked key {key_id}")?,
                Revocation::AlreadyRevoked => writeln!(out, "key {key_id} was already revoked")?,
            }
        }
        Command::Keys(KeysCommand::SetLimit {
            key_id,
            limit,
            output,
        }) => {
            let key_id = parse_id("key id", &key_id)?;
            let change = parse_limit_change(&limit)?;
            let pool = connect(url).await?;
            let limit = limits::set_key_limit(&pool, key_id, change).await?;
            print_key_limit(out, &limit, output)?;
        }
        Command::Serve => serve(url).await?,
    }
    Ok(())
}

async fn connect(url: Option<String>) -> Result<PgPool, CommandError> {
    let url = url
        .filter(|url| !url.trim().is_empty())
        .ok_or(CommandError::NoDatabaseUrl)?;
    Ok(database::connect(&url).await?)
}

/// `keysync serve`: settings, database, listeners, then the server until a signal.
async fn serve(url: Option<String>) -> Result<(), CommandError> {
    let config = ServeConfig::from_env(&ProcessEnvironment)?;
    let pool = connect(url).await?;
    let bind = |what: &'static str, addr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|cause| CommandError::Bind { what, addr, cause })
    };
    let grpc_listener = bind("gRPC", config.grpc_addr).await?;
    let http_listener = bind("admin HTTP", config.http_addr).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(shutdown::cancel_on_signal(shutdown.clone()));
    let notifications = PgConnector::new(&pool);
    server::run(
        &config,
        PgLoader::new(pool),
        notifications,
        grpc_listener,
        http_listener,
        shutdown,
    )
    .await?;
    Ok(())
}

fn parse_id(what: &'static str, value: &str) -> Result<Uuid, CommandError> {
    Uuid::parse_str(value.trim()).map_err(|_| CommandError::InvalidId {
        what,
        value: value.to_owned(),
    })
}

/// `--rpm N [--burst B]` or `--clear`, checked before anything is written.
fn parse_limit_change(args: &LimitArgs) -> Result<LimitChange, CommandError> {
    match (args.clear, args.rpm.as_deref(), args.burst.as_deref()) {
        (true, None, None) => Ok(LimitChange::Clear),
        (true, _, _) => Err(CommandError::LimitUsage(
            "--clear cannot be combined with --rpm or --burst",
        )),
        (false, None, None) => Err(CommandError::LimitUsage(
            "give --rpm N (and optionally --burst B), or --clear",
        )),
        (false, None, Some(_)) => Err(CommandError::LimitUsage("--burst needs --rpm")),
        (false, Some(rpm), burst) => Ok(LimitChange::Set {
            requests_per_minute: parse_limit_value("--rpm", rpm, 1)?,
            burst: burst
                .map(|burst| parse_limit_value("--burst", burst, 0))
                .transpose()?
                .unwrap_or(0),
        }),
    }
}

/// A whole number from `min` to [`MAX_LIMIT_VALUE`] (what the schema stores); digits
/// only, so `+5`, `1e3` and `-1` are refused rather than read some other way.
fn parse_limit_value(flag: &'static str, value: &str, min: u32) -> Result<u32, CommandError> {
    let text = value.trim();
    text.bytes()
        .all(|byte| byte.is_ascii_digit())
        .then(|| text.parse::<u32>().ok())
        .flatten()
        .filter(|number| (min..=MAX_LIMIT_VALUE).contains(number))
        .ok_or_else(|| CommandError::InvalidLimitValue {
            flag,
            value: value.to_owned(),
            min,
        })
}

/// A trimmed name the schema accepts and a table can show on one line.
fn parse_name(what: &'static str, name: &str) -> Result<String, CommandError> {
    let invalid = |reason| CommandError::InvalidName { what, reason };
    let name = name.trim();
    if name.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(invalid("longer than 200 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("contains control characters"));
    }
    Ok(name.to_owned())
}

/// `--expires-in`: `now + duration`, cut to whole seconds so what is printed is what
/// is stored.
fn parse_expiry(value: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, CommandError> {
    const FLAG: &str = "--expires-in";
    let duration = parse_duration(FLAG, value)?;
    if duration.is_zero() {
        return Err(invalid_duration(FLAG, value, "must be longer than zero"));
    }
    after(FLAG, value, duration, now)
}

/// `--grace`: when the old key of a rotation stops working; `None` (for `0s`) means at
/// once, by revocation.
fn parse_grace(value: &str, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, CommandError> {
    const FLAG: &str = "--grace";
    let duration = parse_duration(FLAG, value)?;
    if duration.is_zero() {
        return Ok(None);
    }
    after(FLAG, value, duration, now).map(Some)
}

fn invalid_duration(flag: &'static str, value: &str, reason: impl Into<String>) -> CommandError {
    CommandError::InvalidDuration {
        flag,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// A humantime duration such as `90d`, `24h`, `30m` or `0s`.
fn parse_duration(flag: &'static str, value: &str) -> Result<Duration, CommandError> {
    let text = value.trim();
    if text.starts_with('-') {
        return Err(invalid_duration(flag, value, "must not be negative"));
    }
    humantime::parse_duration(text)
        .map_err(|error| invalid_duration(flag, value, error.to_string()))
}

/// `now + duration`, cut to whole seconds.
fn after(
    flag: &'static str,
    value: &str,
    duration: Duration,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, CommandError> {
    TimeDelta::from_std(duration)
        .ok()
        .and_then(|delta| now.checked_add_signed(delta))
        .and_then(|at| DateTime::from_timestamp(at.timestamp(), 0))
        // PostgreSQL timestamps end in year 294276; stay far below.
        .filter(|at| at.timestamp() < 253_402_300_800)
        .ok_or_else(|| invalid_duration(flag, value, "too far in the future"))
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn print_json(out: &mut dyn Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

#[derive(Serialize)]
struct OrgJson {
    org_id: Uuid,
    name: String,
    created_at: String,
    rate_limit: Option<OrgLimitJson>,
}

/// An organization's limit in JSON: always shared by its keys, so no `per_key`.
#[derive(Serialize)]
struct OrgLimitJson {
    requests_per_minute: u32,
    burst: u32,
}

impl From<RateLimit> for OrgLimitJson {
    fn from(limit: RateLimit) -> Self {
        OrgLimitJson {
            requests_per_minute: limit.requests_per_minute,
            burst: limit.burst,
        }
    }
}

/// A limit as the tables show it: `100/min+20`, or `-` for none.
fn limit_text(limit: Option<RateLimit>) -> String {
    limit.map_or_else(|| "-".to_owned(), |limit| limit.to_string())
}

fn print_created_org(out: &mut dyn Write, org: &Organization, output: Output) -> io::Result<()> {
    if output.json {
        #[derive(Serialize)]
        struct Created<'a> {
            org_id: Uuid,
            name: &'a str,
        }
        print_json(
            out,
            &Created {
                org_id: org.id,
                name: &org.name,
            },
        )
    } else {
        writeln!(out, "created organization {} ({})", org.id, org.name)
    }
}

fn print_orgs(out: &mut dyn Write, orgs: &[Organization], output: Output) -> io::Result<()> {
    if output.json {
        let rows: Vec<OrgJson> = orgs
            .iter()
            .map(|org| OrgJson {
                org_id: org.id,
                name: org.name.clone(),
                created_at: rfc3339(org.created_at),
                rate_limit: org.rate_limit.map(OrgLimitJson::from),
            })
            .collect();
        print_json(out, &rows)
    } else {
        let rows: Vec<Vec<String>> = orgs
            .iter()
            .map(|org| {
                vec![
                    org.id.to_string(),
                    org.name.clone(),
                    rfc3339(org.created_at),
                    limit_text(org.rate_limit),
                ]
            })
            .collect();
        out.write_all(table::render(&["ID", "NAME", "CREATED", "LIMIT"], &rows).as_bytes())
    }
}

async fn create_key(
    pool: &PgPool,
    out: &mut dyn Write,
    org_id: Uuid,
    name: String,
    env: KeyEnvironment,
    expires_at: Option<DateTime<Utc>>,
    output: Output,
) -> Result<(), CommandError> {
    let key = GeneratedKey::generate(env);
    let created = keys::create(
        pool,
        &NewKey {
            id: Uuid::new_v4(),
            org_id,
            name,
            key_hash: key.hash(),
            key_prefix: key.prefix().to_owned(),
            expires_at,
        },
    )
    .await?;
    let expires = created.expires_at.map(rfc3339);
    if output.json {
        #[derive(Serialize)]
        struct Created<'a> {
            key: &'a str,
            key_id: Uuid,
            org_id: Uuid,
            name: &'a str,
            prefix: &'a str,
            expires_at: Option<String>,
        }
        print_json(
            out,
            &Created {
                key: key.secret(),
                key_id: created.id,
                org_id: created.org_id,
                name: &created.name,
                prefix: &created.key_prefix,
                expires_at: expires,
            },
        )?;
    } else {
        writeln!(out, "key: {}", key.secret())?;
        writeln!(out, "key_id: {}", created.id)?;
        writeln!(out, "org_id: {}", created.org_id)?;
        writeln!(out, "name: {}", created.name)?;
        writeln!(out, "prefix: {}", created.key_prefix)?;
        writeln!(out, "expires_at: {}", expires.as_deref().unwrap_or("never"))?;
        writeln!(
            out,
            "This key is shown only once: store it now. keysync keeps only its hash."
        )?;
    }
    Ok(())
}

fn print_rotation(out: &mut dyn Write, rotation: &Rotation, output: Output) -> io::Result<()> {
    let new_key = &rotation.new_key;
    let expires = new_key.expires_at.map(rfc3339);
    let old_stops = rfc3339(rotation.old_key_stops_at);
    if output.json {
        #[derive(Serialize)]
        struct Rotated<'a> {
            key: &'a str,
            key_id: Uuid,
            org_id: Uuid,
            name: &'a str,
            prefix: &'a str,
            expires_at: Option<String>,
            old_key_id: Uuid,
            old_key_expires_at: String,
        }
        print_json(
            out,
            &Rotated {
                key: rotation.key.secret(),
                key_id: new_key.id,
                org_id: new_key.org_id,
                name: &new_key.name,
                prefix: &new_key.key_prefix,
                expires_at: expires,
                old_key_id: rotation.old_key_id,
                old_key_expires_at: old_stops,
            },
        )
    } else {
        writeln!(out, "key: {}", rotation.key.secret())?;
        writeln!(out, "key_id: {}", new_key.id)?;
        writeln!(out, "org_id: {}", new_key.org_id)?;
        writeln!(out, "name: {}", new_key.name)?;
        writeln!(out, "prefix: {}", new_key.key_prefix)?;
        writeln!(out, "expires_at: {}", expires.as_deref().unwrap_or("never"))?;
        writeln!(out, "old_key_id: {}", rotation.old_key_id)?;
        writeln!(out, "old_key_expires_at: {old_stops}")?;
        if rotation.old_key_revoked {
            writeln!(out, "The old key is revoked.")?;
        } else {
            writeln!(out, "The old key keeps working until {old_stops}.")?;
        }
        writeln!(
            out,
            "This key is shown only once: store it now. keysync keeps only its hash."
        )
    }
}

fn print_org_limit(out: &mut dyn Write, limit: &OrgLimit, output: Output) -> io::Result<()> {
    if output.json {
        #[derive(Serialize)]
        struct Set {
            org_id: Uuid,
            rate_limit: Option<OrgLimitJson>,
            changed: bool,
        }
        return print_json(
            out,
            &Set {
                org_id: limit.org_id,
                rate_limit: limit.rate_limit.map(OrgLimitJson::from),
                changed: limit.changed,
            },
        );
    }
    let unchanged = if limit.changed { "" } else { " (unchanged)" };
    match limit.rate_limit {
        Some(rate_limit) => writeln!(
            out,
            "organization {}: rate limit {rate_limit}, {} requests a minute shared by its \
             keys{unchanged}",
            limit.org_id,
            rate_limit.budget()
        ),
        None => writeln!(
            out,
            "organization {}: no rate limit{unchanged}",
            limit.org_id
        ),
    }
}

fn print_key_limit(out: &mut dyn Write, limit: &KeyLimit, output: Output) -> io::Result<()> {
    if output.json {
        #[derive(Serialize)]
        struct Set {
            key_id: Uuid,
            org_id: Uuid,
            rate_limit: Option<RateLimit>,
            changed: bool,
        }
        return print_json(
            out,
            &Set {
                key_id: limit.key_id,
                org_id: limit.org_id,
                rate_limit: limit.rate_limit,
                changed: limit.changed,
            },
        );
    }
    let unchanged = if limit.changed { "" } else { " (unchanged)" };
    match limit.rate_limit {
        Some(rate_limit) if rate_limit.per_key => writeln!(
            out,
            "key {}: rate limit {rate_limit} of its own, {} requests a minute for this key \
             alone{unchanged}",
            limit.key_id,
            rate_limit.budget()
        ),
        Some(rate_limit) => writeln!(
            out,
            "key {}: no limit of its own; its organization's {rate_limit} applies, shared \
             with the organization's other keys{unchanged}",
            limit.key_id
        ),
        None => writeln!(
            out,
            "key {}: no rate limit (neither the key nor its organization has one){unchanged}",
            limit.key_id
        ),
    }
}

#[derive(Serialize)]
struct KeyJson<'a> {
    key_id: Uuid,
    org_id: Uuid,
    prefix: &'a str,
    name: &'a str,
    created_at: String,
    expires_at: Option<String>,
    revoked_at: Option<String>,
    status: &'static str,
    /// The limit the key runs under: its own (`per_key`), else its organization's.
    rate_limit: Option<RateLimit>,
}

fn print_keys(
    out: &mut dyn Write,
    keys: &[ListedKey],
    now: DateTime<Utc>,
    output: Output,
) -> io::Result<()> {
    if output.json {
        let rows: Vec<KeyJson> = keys
            .iter()
            .map(
                |ListedKey {
                     info: key,
                     rate_limit,
                 }| KeyJson {
                    key_id: key.id,
                    org_id: key.org_id,
                    prefix: &key.key_prefix,
                    name: &key.name,
                    created_at: rfc3339(key.created_at),
                    expires_at: key.expires_at.map(rfc3339),
                    revoked_at: key.revoked_at.map(rfc3339),
                    status: key.status(now).as_str(),
                    rate_limit: *rate_limit,
                },
            )
            .collect();
        print_json(out, &rows)
    } else {
        let rows: Vec<Vec<String>> = keys
            .iter()
            .map(
                |ListedKey {
                     info: key,
                     rate_limit,
                 }| {
                    vec![
                        key.id.to_string(),
                        key.key_prefix.clone(),
                        key.name.clone(),
                        rfc3339(key.created_at),
                        key.expires_at.map_or_else(|| "never".to_owned(), rfc3339),
                        key.status(now).as_str().to_owned(),
                        limit_text(*rate_limit),
                        rate_limit.map_or("-", |limit| limit.scope()).to_owned(),
                    ]
                },
            )
            .collect();
        let headers = [
            "ID", "PREFIX", "NAME", "CREATED", "EXPIRES", "STATUS", "LIMIT", "SCOPE",
        ];
        out.write_all(table::render(&headers, &rows).as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::ApiKeyInfo;

    #[test]
    fn ids_must_be_uuids() {
        let error = parse_id("org id", "abc").unwrap_err();
        assert_eq!(error.to_string(), "invalid org id 'abc': not a UUID");
        let id = Uuid::new_v4();
        assert_eq!(parse_id("key id", &id.to_string()).unwrap(), id);
    }

    #[test]
    fn names_are_trimmed_and_checked() {
        assert_eq!(parse_name("key", "  ci key ").unwrap(), "ci key");
        let error = parse_name("organization", "   ").unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid organization name: must not be empty"
        );
        assert!(parse_name("key", &"x".repeat(201)).is_err());
        assert!(parse_name("key", &"é".repeat(200)).is_ok());
        assert!(parse_name("key", "two\nlines").is_err());
    }

    #[test]
    fn expiry_accepts_humantime_units() {
        let now = DateTime::from_timestamp(1_700_000_000, 123_000_000).unwrap();
        for (text, seconds) in [
            ("90d", 90 * 86_400),
            ("24h", 86_400),
            ("30m", 1800),
            ("45s", 45),
        ] {
            let at = parse_expiry(text, now).unwrap();
            assert_eq!(at.timestamp(), 1_700_000_000 + seconds, "{text}");
            assert_eq!(at.timestamp_subsec_nanos(), 0);
        }
    }

    #[test]
    fn grace_is_a_duration_and_zero_means_at_once() {
        let now = DateTime::from_timestamp(1_700_000_000, 500_000_000).unwrap();
        let at = parse_grace("24h", now).unwrap().unwrap();
        assert_eq!(at.timestamp(), 1_700_000_000 + 86_400);
        assert_eq!(at.timestamp_subsec_nanos(), 0);
        assert_eq!(parse_grace("0s", now).unwrap(), None);
        assert_eq!(parse_grace(" 0s ", now).unwrap(), None);
        for text in ["-1h", "-0s", "soon", "", "1 fortnight", "100000000y"] {
            let message = parse_grace(text, now).unwrap_err().to_string();
            assert!(
                message.starts_with(&format!("invalid --grace '{text}': ")),
                "{message}"
            );
            assert!(!message.contains('\n'), "{message}");
        }
        let message = parse_grace("-1h", now).unwrap_err().to_string();
        assert_eq!(message, "invalid --grace '-1h': must not be negative");
    }

    #[test]
    fn bad_expiry_is_one_clear_error() {
        for text in ["soon", "0s", "", "10", "100000000y"] {
            let error = parse_expiry(text, Utc::now()).unwrap_err();
            let message = error.to_string();
            assert!(
                message.starts_with(&format!("invalid --expires-in '{text}': ")),
                "{message}"
            );
            assert!(!message.contains('\n'), "{message}");
        }
    }

    #[test]
    fn key_listing_shows_prefix_and_status() {
        let now = Utc::now();
        let key = ApiKeyInfo {
            id: Uuid::nil(),
            org_id: Uuid::nil(),
            name: "ci".to_owned(),
            key_prefix: "sk_live_AbCd".to_owned(),
            created_at: DateTime::from_timestamp(0, 0).unwrap(),
            expires_at: None,
            revoked_at: None,
            active: true,
        };
        let key = ListedKey {
            info: key,
            rate_limit: None,
        };
        let mut text = Vec::new();
        print_keys(
            &mut text,
            std::slice::from_ref(&key),
            now,
            Output { json: false },
        )
        .unwrap();
        let text = String::from_utf8(text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["ID", "PREFIX", "NAME", "CREATED", "EXPIRES", "STATUS", "LIMIT", "SCOPE"]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            [
                "00000000-0000-0000-0000-000000000000",
                "sk_live_AbCd",
                "ci",
                "1970-01-01T00:00:00Z",
                "never",
                "active",
                "-",
                "-"
            ]
        );

        let mut json = Vec::new();
        print_keys(&mut json, &[key], now, Output { json: true }).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value[0]["prefix"], "sk_live_AbCd");
        assert_eq!(value[0]["status"], "active");
        assert_eq!(value[0]["expires_at"], serde_json::Value::Null);
        assert_eq!(value[0]["rate_limit"], serde_json::Value::Null);
    }

    fn limit_args(rpm: Option<&str>, burst: Option<&str>, clear: bool) -> LimitArgs {
        LimitArgs {
            rpm: rpm.map(str::to_owned),
            burst: burst.map(str::to_owned),
            clear,
        }
    }

    #[test]
    fn limit_changes_are_set_or_clear() {
        assert_eq!(
            parse_limit_change(&limit_args(Some("100"), Some("20"), false)).unwrap(),
            LimitChange::Set {
                requests_per_minute: 100,
                burst: 20
            }
        );
        assert_eq!(
            parse_limit_change(&limit_args(Some(" 7 "), None, false)).unwrap(),
            LimitChange::Set {
                requests_per_minute: 7,
                burst: 0
            }
        );
        assert_eq!(
            parse_limit_change(&limit_args(Some("2147483647"), Some("2147483647"), false)).unwrap(),
            LimitChange::Set {
                requests_per_minute: MAX_LIMIT_VALUE,
                burst: MAX_LIMIT_VALUE
            }
        );
        assert_eq!(
            parse_limit_change(&limit_args(None, None, true)).unwrap(),
            LimitChange::Clear
        );
    }

    #[test]
    fn limit_misuse_is_one_clear_error() {
        for (args, expected) in [
            (
                limit_args(Some("10"), None, true),
                "--clear cannot be combined with --rpm or --burst",
            ),
            (
                limit_args(None, Some("1"), true),
                "--clear cannot be combined with --rpm or --burst",
            ),
            (
                limit_args(None, None, false),
                "give --rpm N (and optionally --burst B), or --clear",
            ),
            (limit_args(None, Some("5"), false), "--burst needs --rpm"),
            (
                limit_args(Some("0"), None, false),
                "invalid --rpm '0': expected a whole number from 1 to 2147483647",
            ),
            (
                limit_args(Some("10"), Some("-1"), false),
                "invalid --burst '-1': expected a whole number from 0 to 2147483647",
            ),
        ] {
            let message = parse_limit_change(&args).unwrap_err().to_string();
            assert_eq!(message, expected, "{args:?}");
        }
        for rpm in [
            "2147483648",
            "4294967296",
            "-5",
            "+5",
            "1e3",
            "ten",
            "",
            "1.5",
        ] {
            let message = parse_limit_change(&limit_args(Some(rpm), None, false))
                .unwrap_err()
                .to_string();
            assert!(
                message.starts_with(&format!("invalid --rpm '{rpm}': ")),
                "{message}"
            );
        }
        assert!(parse_limit_change(&limit_args(Some("1"), Some("2147483648"), false)).is_err());
    }

    #[test]
    fn limits_are_shown_as_rate_plus_burst_or_a_dash() {
        let limit = RateLimit {
            requests_per_minute: 100,
            burst: 20,
            per_key: false,
        };
        assert_eq!(limit_text(Some(limit)), "100/min+20");
        assert_eq!(limit_text(None), "-");

        let org = Organization {
            id: Uuid::nil(),
            name: "Acme".to_owned(),
            created_at: DateTime::from_timestamp(0, 0).unwrap(),
            rate_limit: Some(limit),
        };
        let mut text = Vec::new();
        print_orgs(
            &mut text,
            std::slice::from_ref(&org),
            Output { json: false },
        )
        .unwrap();
        let text = String::from_utf8(text).unwrap();
        let last = text.lines().nth(1).unwrap();
        assert!(last.ends_with("  100/min+20"), "{text}");
        let mut json = Vec::new();
        print_orgs(&mut json, &[org], Output { json: true }).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            value[0]["rate_limit"],
            serde_json::json!({"requests_per_minute": 100, "burst": 20})
        );
    }
}
