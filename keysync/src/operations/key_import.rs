//! Importing keys that customers already hold (`keys import`, `POST
//! /v1/orgs/{org_id}/keys:import`): JSON Lines, one key a line, given by its hash (the
//! hex SHA-256 of the whole key, as the old gateway stored it) or by its text (hashed
//! here; the text is never stored, logged or printed).
//!
//! All or nothing: every line is checked first (fields, hash, name, a repeat of an
//! earlier line, a key already stored), and the first bad one is the error, named by
//! its line number, before anything is written; then one transaction inserts every key
//! (arrays of [`BATCH`] rows a statement) and records one `org.keys_imported`. The keys
//! share the transaction's revision, so keysync picks them up in one catch-up.
//!
//! Imported keys carry no checksum: gateways treat them as keys issued before checksums
//! (legacy), looked up while `accept_legacy_keys` is on. A key's text must still be one
//! a gateway reads as a key (`sk_live_` or `sk_test_`, then at least 8 of
//! `[A-Za-z0-9_-]`): a line with any other text is refused, since no request could use
//! it. A line given by its hash cannot be checked so.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use keysync_contract::credential::is_well_formed;
use keysync_contract::key_hash::KeyHash;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use super::actor::Actor;
use super::audit::{self, Absent, AuditAction, Change};
use super::key_secret::PREFIX_LEN;
use super::metadata::Metadata;
use super::name::Name;
use super::sql_state::{violation, Violation};

/// Rows a statement inserts: big enough that a statement's overhead is small, small
/// enough that its arrays stay a few megabytes.
pub const BATCH: usize = 5_000;

/// The name of an imported key that gives none.
pub const DEFAULT_NAME: &str = "imported";

/// Longest display prefix a line may give (`prefix`).
pub const MAX_PREFIX_CHARS: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("organization {0} not found")]
    OrgNotFound(Uuid),
    /// The first bad line (1-based); nothing was written.
    #[error("line {line}: {reason}; nothing was imported")]
    Line { line: usize, reason: String },
    #[error("no key to import: the file has no line with a key")]
    Empty,
    /// A key of the file was stored by someone else while the import ran.
    #[error("a key of the file was stored meanwhile; nothing was imported (run it again)")]
    Conflict,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// One line as written. Unknown fields are refused (a misspelt `expires_at` must not
/// import a key that never expires).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(default)]
    key_hash: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    metadata: Option<Metadata>,
}

/// A checked line, ready to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyToImport {
    /// 1-based, in the file.
    pub line: usize,
    pub hash: KeyHash,
    pub prefix: String,
    pub name: Name,
    pub created_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub metadata: Option<Metadata>,
}

/// One imported key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ImportedKey {
    /// Its line in the file.
    pub line: usize,
    pub key_id: Uuid,
    /// The display prefix: the key's first 12 characters when the line gave the key,
    /// else the line's `prefix` (empty without one).
    pub prefix: String,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ImportedKeys {
    pub org_id: Uuid,
    /// Keys imported (every line with a key).
    pub imported: usize,
    /// Each key, in file order.
    pub keys: Vec<ImportedKey>,
}

/// The import as the audit trail records it: how many, never a hash.
#[derive(Serialize)]
struct AuditedImport {
    imported: usize,
}

fn bad(line: usize, reason: impl Into<String>) -> ImportError {
    ImportError::Line {
        line,
        reason: reason.into(),
    }
}

/// Checks one line (`number` is 1-based). Errors never quote the line: it may hold a
/// key.
fn check_line(number: usize, text: &str, now: DateTime<Utc>) -> Result<KeyToImport, ImportError> {
    let line: Line = serde_json::from_str(text).map_err(|error| {
        // serde_json's messages name fields and positions, never the values of strings.
        let message = error.to_string();
        let cause = message.split(" at line ").next().unwrap_or(&message);
        bad(number, format!("not a key object ({cause})"))
    })?;
    let (hash, key_prefix) = match (&line.key_hash, &line.key) {
        (Some(_), Some(_)) => return Err(bad(number, "give key_hash or key, not both")),
        (None, None) => return Err(bad(number, "no key_hash and no key")),
        (Some(hex_hash), None) => (parse_hash(number, hex_hash)?, None),
        (None, Some(key)) => {
            if !is_well_formed(key.as_bytes()) {
                return Err(bad(
                    number,
                    "the key is not one gateways read as a key (sk_live_ or sk_test_, then \
                     at least 8 of A-Z a-z 0-9 _ -, at most 256 characters)",
                ));
            }
            let prefix: String = key.chars().take(PREFIX_LEN).collect();
            (KeyHash::of_key(key.as_bytes()), Some(prefix))
        }
    };
    let prefix = match (key_prefix, line.prefix) {
        (Some(_), Some(_)) => {
            return Err(bad(
                number,
                "prefix is taken from the key itself: give it with key_hash only",
            ))
        }
        (Some(prefix), None) => prefix,
        (None, Some(prefix)) => {
            if prefix.chars().count() > MAX_PREFIX_CHARS
                || prefix.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                return Err(bad(
                    number,
                    format!("invalid prefix: at most {MAX_PREFIX_CHARS} characters, no spaces"),
                ));
            }
            prefix
        }
        (None, None) => String::new(),
    };
    let name = Name::of_key(line.name.as_deref().unwrap_or(DEFAULT_NAME))
        .map_err(|error| bad(number, error.to_string()))?;
    if line.created_at.is_some_and(|at| at > now) {
        return Err(bad(number, "created_at is in the future"));
    }
    Ok(KeyToImport {
        line: number,
        hash,
        prefix,
        name,
        created_at: line.created_at,
        expires_at: line.expires_at,
        metadata: line.metadata,
    })
}

fn parse_hash(number: usize, text: &str) -> Result<KeyHash, ImportError> {
    if text.len() != 64 {
        return Err(bad(
            number,
            format!(
                "key_hash has {} characters, expected 64 hex digits (a SHA-256)",
                text.chars().count()
            ),
        ));
    }
    let bytes = hex::decode(text)
        .map_err(|_| bad(number, "key_hash is not hex (expected 64 of 0-9 a-f)"))?;
    KeyHash::from_slice(&bytes).ok_or_else(|| bad(number, "key_hash is not 32 bytes"))
}

/// Checks every line of `text` (JSON Lines; blank lines are skipped but counted), and
/// refuses a key given twice. The first bad line is the error.
pub fn parse(text: &str, now: DateTime<Utc>) -> Result<Vec<KeyToImport>, ImportError> {
    let mut keys = Vec::new();
    let mut seen: HashMap<KeyHash, usize> = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let key = check_line(number, line, now)?;
        if let Some(first) = seen.insert(key.hash, number) {
            return Err(bad(number, format!("the same key as line {first}")));
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(ImportError::Empty);
    }
    Ok(keys)
}

/// Imports `keys` (checked by [`parse`]) into organization `org_id`, all or none.
pub async fn import(
    pool: &PgPool,
    actor: Actor,
    org_id: Uuid,
    keys: &[KeyToImport],
) -> Result<ImportedKeys, ImportError> {
    if keys.is_empty() {
        return Err(ImportError::Empty);
    }
    let mut transaction = pool.begin().await?;
    // Keeps the organization from going away under the import.
    let found: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM organizations WHERE id = $1 FOR KEY SHARE")
            .bind(org_id)
            .fetch_optional(&mut *transaction)
            .await?;
    if found.is_none() {
        return Err(ImportError::OrgNotFound(org_id));
    }
    let hashes: Vec<Vec<u8>> = keys.iter().map(|key| key.hash.0.to_vec()).collect();
    let stored: Vec<(Vec<u8>, Uuid)> =
        sqlx::query_as("SELECT key_hash, id FROM api_keys WHERE key_hash = ANY($1::bytea[])")
            .bind(&hashes)
            .fetch_all(&mut *transaction)
            .await?;
    if !stored.is_empty() {
        let stored: HashMap<Vec<u8>, Uuid> = stored.into_iter().collect();
        if let Some((key, id)) = keys
            .iter()
            .find_map(|key| stored.get(key.hash.0.as_slice()).map(|id| (key, id)))
        {
            return Err(bad(
                key.line,
                format!("this key is already stored, as key {id}"),
            ));
        }
    }

    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut *transaction)
        .await?;
    let mut imported = Vec::with_capacity(keys.len());
    for batch in keys.chunks(BATCH) {
        let ids: Vec<Uuid> = batch.iter().map(|_| Uuid::new_v4()).collect();
        let hashes: Vec<Vec<u8>> = batch.iter().map(|key| key.hash.0.to_vec()).collect();
        let names: Vec<&str> = batch.iter().map(|key| key.name.as_str()).collect();
        let prefixes: Vec<&str> = batch.iter().map(|key| key.prefix.as_str()).collect();
        let created: Vec<DateTime<Utc>> = batch
            .iter()
            .map(|key| key.created_at.unwrap_or(now))
            .collect();
        let expires: Vec<Option<DateTime<Utc>>> = batch.iter().map(|key| key.expires_at).collect();
        let metadata: Vec<Option<&str>> = batch
            .iter()
            .map(|key| key.metadata.as_ref().map(Metadata::as_str))
            .collect();
        sqlx::query(
            "INSERT INTO api_keys (id, org_id, name, key_hash, key_prefix, created_at, \
                                   expires_at, metadata, imported, changed_by_token) \
             SELECT k.id, $1, k.name, k.key_hash, k.prefix, k.created_at, k.expires_at, \
                    k.metadata::json, true, $9 \
             FROM unnest($2::uuid[], $3::text[], $4::bytea[], $5::text[], \
                         $6::timestamptz[], $7::timestamptz[], $8::text[]) \
                  AS k (id, name, key_hash, prefix, created_at, expires_at, metadata)",
        )
        .bind(org_id)
        .bind(&ids)
        .bind(&names)
        .bind(&hashes)
        .bind(&prefixes)
        .bind(&created)
        .bind(&expires)
        .bind(&metadata)
        .bind(actor.token_id())
        .execute(&mut *transaction)
        .await
        .map_err(|error| match violation(&error) {
            Some(Violation::Unique) => ImportError::Conflict,
            Some(Violation::ForeignKey) => ImportError::OrgNotFound(org_id),
            _ => ImportError::Database(error),
        })?;
        imported.extend(batch.iter().zip(ids).map(|(key, key_id)| ImportedKey {
            line: key.line,
            key_id,
            prefix: key.prefix.clone(),
        }));
    }
    audit::record(
        &mut transaction,
        actor,
        Change {
            action: AuditAction::OrgKeysImported,
            object_id: org_id,
            org_id: Some(org_id),
            old_value: Absent,
            new_value: AuditedImport {
                imported: imported.len(),
            },
        },
    )
    .await?;
    transaction.commit().await?;
    Ok(ImportedKeys {
        org_id,
        imported: imported.len(),
        keys: imported,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn error_of(text: &str) -> String {
        parse(text, now()).unwrap_err().to_string()
    }

    #[test]
    fn hashes_and_keys_are_read_with_their_fields() {
        let key = "sk_live_0123456789abcdefABCDEF0123456789";
        let text = format!(
            "{{\"key_hash\": \"{HASH}\", \"name\": \"old\", \"expires_at\": null, \
             \"created_at\": \"2024-01-02T03:04:05Z\", \"prefix\": \"sk_live_ab\"}}\n\
             \n\
             {{\"key\": \"{key}\", \"expires_at\": \"2030-01-01T00:00:00Z\", \
             \"metadata\": {{\"tier\": \"gold\"}}}}\n"
        );
        let keys = parse(&text, now()).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].line, 1);
        assert_eq!(hex::encode(keys[0].hash.0), HASH);
        assert_eq!(keys[0].prefix, "sk_live_ab");
        assert_eq!(keys[0].name.as_str(), "old");
        assert_eq!(
            keys[0].created_at,
            DateTime::from_timestamp(1_704_164_645, 0)
        );
        // Blank lines count: the key is on line 3.
        assert_eq!(keys[1].line, 3);
        assert_eq!(keys[1].hash, KeyHash::of_key(key.as_bytes()));
        assert_eq!(keys[1].prefix, "sk_live_0123");
        assert_eq!(keys[1].name.as_str(), DEFAULT_NAME);
        assert_eq!(
            keys[1].metadata.as_ref().unwrap().as_str(),
            r#"{"tier": "gold"}"#
        );
        // Upper-case hex is the same hash.
        let upper = parse(
            &format!("{{\"key_hash\":\"{}\"}}", HASH.to_uppercase()),
            now(),
        );
        assert_eq!(upper.unwrap()[0].hash, keys[0].hash);
    }

    #[test]
    fn a_bad_line_is_one_error_naming_it() {
        let good = format!("{{\"key_hash\":\"{HASH}\"}}");
        let cases = [
            (
                format!("{good}\n{{\"key_hash\":\"{}\"}}", &HASH[1..]),
                "line 2: key_hash has 63 characters",
            ),
            (
                format!("{{\"key_hash\":\"{}zz\"}}", &HASH[2..]),
                "line 1: key_hash is not hex",
            ),
            (
                format!("{good}\n\n{good}"),
                "line 3: the same key as line 1",
            ),
            (
                format!("{{\"key_hash\":\"{HASH}\",\"expires\":null}}"),
                "line 1: not a key object (unknown field `expires`",
            ),
            (
                "{\"name\":\"x\"}".to_owned(),
                "line 1: no key_hash and no key",
            ),
            ("not json".to_owned(), "line 1: not a key object"),
            (
                format!("{{\"key_hash\":\"{HASH}\",\"key\":\"sk_live_abcdefgh\"}}"),
                "line 1: give key_hash or key, not both",
            ),
            (
                format!("{{\"key_hash\":\"{HASH}\",\"created_at\":\"2099-01-01T00:00:00Z\"}}"),
                "line 1: created_at is in the future",
            ),
            (
                format!("{{\"key_hash\":\"{HASH}\",\"metadata\":[1]}}"),
                "line 1: not a key object (invalid metadata: not a JSON object",
            ),
        ];
        for (text, expected) in cases {
            let error = error_of(&text);
            assert!(error.starts_with(expected), "{text}: {error}");
            assert!(error.ends_with("nothing was imported"), "{error}");
        }
        assert!(matches!(parse("\n\n", now()), Err(ImportError::Empty)));
    }

    #[test]
    fn a_key_is_never_quoted_in_an_error() {
        let secret = "sk_live_Secret0123456789";
        for text in [
            format!("{{\"key\":\"{secret} \"}}"),
            format!("{{\"key\":\"{secret}\",\"prefix\":\"x\"}}"),
            format!("{{\"key\":\"{secret}\"}}\n{{\"key\":\"{secret}\"}}"),
            format!("{{\"key\":\"{secret}\",\"name\":\"\"}}"),
            format!("{{\"key\":\"{secret}\""),
            format!("{{\"key\":[\"{secret}\"]}}"),
        ] {
            let error = error_of(&text);
            assert!(!error.contains("Secret0123"), "{error}");
        }
    }
}
