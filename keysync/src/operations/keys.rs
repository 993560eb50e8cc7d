//! API keys, as operators manage them: create (the secret shown once, its hash and
//! prefix stored), list (with the rate limit each runs under), rotate, revoke. Each
//! change is recorded in the audit trail by what an operator sees of the key
//! ([`AuditedKey`]), never its secret or hash.

use chrono::{DateTime, Utc};
use keysync_contract::limit::KeyLimit;
use serde::Serialize;
use sqlx::{AssertSqlSafe, PgConnection, PgPool};
use uuid::Uuid;

use super::actor::Actor;
use super::audit::{self, Absent, AuditAction, Change};
use super::key_policy::{Allowlist, Scopes};
use super::key_secret::{KeyEnvironment, KeySecret};
use super::limit_json;
use super::metadata::Metadata;
use super::name::Name;
use super::orgs;
use super::page::PageRequest;
use super::quotas::{self, QuotaColumns, QuotaUse};
use super::sql_state::{violation, Violation};
use super::timestamp::Timestamp;
use crate::key_set::key_policy::PolicyColumns;
use crate::key_set::limit_columns::{InvalidLimit, LimitColumns};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("organization {0} not found")]
    OrgNotFound(Uuid),
    #[error("key {0} not found")]
    NotFound(Uuid),
    #[error("key {0} is revoked; only an active key can be rotated")]
    Revoked(Uuid),
    #[error("key {0} has expired; only an active key can be rotated (create a new one)")]
    Expired(Uuid),
    #[error("key {id} was already rotated, to key {successor}; rotate that one instead")]
    AlreadyRotated { id: Uuid, successor: Uuid },
    #[error("key {id} has prefix '{prefix}', which is neither sk_live_ nor sk_test_")]
    UnknownEnvironment { id: Uuid, prefix: String },
    #[error("unexpected row: {0}")]
    InvalidRow(#[from] InvalidLimit),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// What an operator sees of a stored key; never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ApiKeyInfo {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub key_prefix: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub active: bool,
    /// When a leak report first named it ([`super::leaks`]).
    pub leaked_at: Option<DateTime<Utc>>,
}

/// Whether a key authenticates, as shown in listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Revoked,
    Expired,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Revoked => "revoked",
            KeyStatus::Expired => "expired",
        }
    }
}

impl ApiKeyInfo {
    /// Revocation wins over expiry: it is the operator's explicit act.
    pub fn status(&self, now: DateTime<Utc>) -> KeyStatus {
        if !self.active {
            KeyStatus::Revoked
        } else if self.expires_at.is_some_and(|at| at <= now) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }
}

/// A key to create.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub org_id: Uuid,
    pub name: Name,
    pub environment: KeyEnvironment,
    pub expires_at: Option<DateTime<Utc>>,
    /// The scopes it grants; none by default.
    pub scopes: Scopes,
    /// The networks it may be used from; anywhere by default.
    pub allowed_networks: Allowlist,
    /// The operator's JSON object; none by default.
    pub metadata: Option<Metadata>,
}

/// A new key: the secret, shown this once, and what is stored about it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    /// The key itself (`sk_live_...` or `sk_test_...`), shown only this once.
    #[schema(value_type = String)]
    pub key: KeySecret,
    pub key_id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub prefix: String,
    /// `null`: it never expires.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    /// The scopes it grants, sorted; `[]`: none.
    pub scopes: Vec<String>,
    /// The networks it may be used from, such as `203.0.113.0/24`; `[]`: anywhere.
    pub allowed_networks: Vec<String>,
    /// The operator's JSON object, as given; `null`: none.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Metadata>,
}

/// A key as `keys list` shows it: what an operator sees of it, its status when listed,
/// and the rate limit it runs under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ListedKey {
    pub key_id: Uuid,
    pub org_id: Uuid,
    pub prefix: String,
    pub name: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Timestamp>,
    pub status: KeyStatus,
    /// When a secret scanner first reported it leaked; `null`: never.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub leaked_at: Option<Timestamp>,
    /// Its own limit (`per_key`), else its organization's, else none (`null`).
    #[serde(serialize_with = "limit_json::key_limit")]
    #[schema(value_type = Option<limit_json::KeyLimitJson>)]
    pub rate_limit: Option<KeyLimit>,
    /// Its own monthly quota and its use this period (in its organization's period);
    /// `null`: none of its own (an organization's quota is listed with the organization).
    pub quota: Option<QuotaUse>,
    /// The scopes it grants, sorted; `[]`: none (routes that require one refuse it).
    pub scopes: Vec<String>,
    /// The networks it may be used from, such as `203.0.113.0/24`; `[]`: anywhere.
    pub allowed_networks: Vec<String>,
    /// The minute a gateway last counted a request of it (from the usage flushes);
    /// `null`: never.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<Timestamp>,
    /// Imported (`keys import`) rather than issued by keysync: no checksum, so it works
    /// where gateways accept legacy keys.
    pub imported: bool,
    /// The operator's JSON object, as given; `null`: none.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Metadata>,
}

/// What is kept about a key besides authentication: its last use, whether it was
/// imported, its metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct KeyDataColumns {
    pub last_used_at: Option<DateTime<Utc>>,
    pub imported: bool,
    pub metadata: Option<String>,
}

/// Which of an organization's keys to list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyFilter {
    /// Only keys not used since then (never used, or last used before it) that existed
    /// then (created at or before it): a key created since has had no chance to be used.
    pub unused_since: Option<DateTime<Utc>>,
}

/// A page of an organization's keys, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KeyPage {
    pub items: Vec<ListedKey>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

impl ListedKey {
    /// `key` as listed at `now`. The policy is shown as stored.
    pub fn new(
        key: ApiKeyInfo,
        rate_limit: Option<KeyLimit>,
        quota: Option<QuotaUse>,
        policy: PolicyColumns,
        now: DateTime<Utc>,
    ) -> Self {
        ListedKey {
            status: key.status(now),
            key_id: key.id,
            org_id: key.org_id,
            prefix: key.key_prefix,
            name: key.name,
            created_at: Timestamp(key.created_at),
            expires_at: key.expires_at.map(Timestamp),
            revoked_at: key.revoked_at.map(Timestamp),
            leaked_at: key.leaked_at.map(Timestamp),
            rate_limit,
            quota,
            scopes: policy.scopes,
            allowed_networks: policy.allowed_networks,
            last_used_at: None,
            imported: false,
            metadata: None,
        }
    }

    /// With what is kept about it besides authentication.
    pub fn with_data(self, data: KeyDataColumns) -> Self {
        ListedKey {
            last_used_at: data.last_used_at.map(Timestamp),
            imported: data.imported,
            metadata: data.metadata.map(Metadata::stored),
            ..self
        }
    }
}

#[derive(sqlx::FromRow)]
struct ListedKeyRow {
    #[sqlx(flatten)]
    info: ApiKeyInfo,
    #[sqlx(flatten)]
    limits: LimitColumns,
    #[sqlx(flatten)]
    quota: QuotaColumns,
    #[sqlx(flatten)]
    policy: PolicyColumns,
    #[sqlx(flatten)]
    data: KeyDataColumns,
}

impl ListedKeyRow {
    fn into_listed(self, now: DateTime<Utc>) -> Result<ListedKey, KeyError> {
        let rate_limit = self.limits.resolve()?;
        let quota = self.quota.resolve(now);
        Ok(ListedKey::new(self.info, rate_limit, quota, self.policy, now).with_data(self.data))
    }
}

/// A key as the audit trail records it: what an operator sees of it, never the key or
/// its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditedKey {
    pub name: String,
    pub prefix: String,
    /// `live` or `test`, from the prefix; `null` for a prefix of neither.
    pub environment: Option<KeyEnvironment>,
    pub expires_at: Option<Timestamp>,
    pub status: KeyStatus,
    /// A new key's scopes and allowlist, when it has any (changes to them are
    /// `key.scopes_set` and `key.allowlist_set`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_networks: Vec<String>,
    /// A new key's metadata, when it has some (changes to it are `key.metadata_set`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

impl AuditedKey {
    fn new(
        name: &str,
        prefix: &str,
        expires_at: Option<DateTime<Utc>>,
        status: KeyStatus,
    ) -> AuditedKey {
        AuditedKey {
            name: name.to_owned(),
            prefix: prefix.to_owned(),
            environment: KeyEnvironment::of_key(prefix),
            expires_at: expires_at.map(Timestamp),
            status,
            scopes: Vec::new(),
            allowed_networks: Vec::new(),
            metadata: None,
        }
    }

    fn of_created(key: &CreatedKey) -> AuditedKey {
        AuditedKey {
            name: key.name.clone(),
            prefix: key.prefix.clone(),
            environment: KeyEnvironment::of_key(&key.prefix),
            expires_at: key.expires_at,
            status: KeyStatus::Active,
            scopes: key.scopes.clone(),
            allowed_networks: key.allowed_networks.clone(),
            metadata: key.metadata.clone(),
        }
    }
}

/// A rotation as the audit trail records it (the old key's fields are its old value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditedRotation {
    pub old_key_id: Uuid,
    pub new_key_id: Uuid,
    /// When the old key stops working, and whether it already did (`revoked`).
    pub old_key_expires_at: Timestamp,
    pub old_key_status: KeyStatus,
    pub new_key: AuditedKey,
}

/// What happens to the key being replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldKeyFate {
    /// Revoked in the same transaction (`--grace 0s`).
    RevokeNow,
    /// Keeps working until then, unless it already expires sooner.
    ExpireBy(DateTime<Utc>),
}

/// The result of a rotation: the new key (shown once) and the old key's end.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RotatedKey {
    #[serde(flatten)]
    pub new_key: CreatedKey,
    pub old_key_id: Uuid,
    /// When the old key stops working: its (possibly kept) expiry, or its revocation.
    #[schema(value_type = String, format = DateTime)]
    pub old_key_expires_at: Timestamp,
    /// Whether it stopped already, by revocation (`--grace 0s`).
    #[serde(skip)]
    pub old_key_revoked: bool,
}

/// Outcome of a revocation; revoking twice is not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Revocation {
    Revoked,
    AlreadyRevoked,
}

/// A revoked key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RevokedKey {
    pub key_id: Uuid,
    pub revocation: Revocation,
}

#[derive(sqlx::FromRow)]
struct RotatedRow {
    org_id: Uuid,
    name: String,
    key_prefix: String,
    expires_at: Option<DateTime<Utc>>,
    active: bool,
    expired: bool,
    rate_limit_rpm: Option<i32>,
    rate_limit_burst: Option<i32>,
    #[sqlx(flatten)]
    policy: PolicyColumns,
    metadata: Option<String>,
}

/// The columns of a key to insert, other than its secret.
struct KeyToInsert<'a> {
    org_id: Uuid,
    name: &'a str,
    environment: KeyEnvironment,
    expires_at: Option<DateTime<Utc>>,
    /// The key this one replaces.
    rotated_from: Option<Uuid>,
    /// Its own limit, `rate_limit_rpm` and `rate_limit_burst`.
    rate_limit: (Option<i32>, Option<i32>),
    /// Checked ([`Scopes`]), or copied from a key that was.
    scopes: &'a [String],
    /// Networks as `cidr` text: checked ([`Allowlist`]), or copied from a key that was.
    allowed_networks: &'a [String],
    /// Checked ([`Metadata`]), or copied from a key that was.
    metadata: Option<&'a str>,
    actor: Actor,
}

const COLUMNS: &str =
    "id, org_id, name, key_prefix, created_at, expires_at, revoked_at, active, leaked_at";

/// Draws a new key's secret and inserts the key, with a new id: the one place a key is
/// born, for creation and rotation alike. Only the hash and the prefix are stored.
async fn insert_key(
    connection: &mut PgConnection,
    row: KeyToInsert<'_>,
) -> Result<CreatedKey, sqlx::Error> {
    let secret = KeySecret::generate(row.environment);
    let stored = sqlx::query_as::<_, ApiKeyInfo>(AssertSqlSafe(format!(
        "INSERT INTO api_keys \
             (id, org_id, name, key_hash, key_prefix, expires_at, rotated_from, \
              rate_limit_rpm, rate_limit_burst, changed_by_token, scopes, allowed_networks, \
              metadata) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::text[]::cidr[], \
                 $13::json) \
         RETURNING {COLUMNS}"
    )))
    .bind(Uuid::new_v4())
    .bind(row.org_id)
    .bind(row.name)
    .bind(secret.hash().as_bytes().as_slice())
    .bind(secret.prefix())
    .bind(row.expires_at)
    .bind(row.rotated_from)
    .bind(row.rate_limit.0)
    .bind(row.rate_limit.1)
    .bind(row.actor.token_id())
    .bind(row.scopes)
    .bind(row.allowed_networks)
    .bind(row.metadata)
    .fetch_one(connection)
    .await?;
    Ok(CreatedKey {
        key: secret,
        key_id: stored.id,
        org_id: stored.org_id,
        name: stored.name,
        prefix: stored.key_prefix,
        expires_at: stored.expires_at.map(Timestamp),
        scopes: row.scopes.to_vec(),
        allowed_networks: row.allowed_networks.to_vec(),
        metadata: row.metadata.map(|text| Metadata::stored(text.to_owned())),
    })
}

/// Creates a key for an organization, with the scopes and allowlist it is given
/// (checked before: a policy the contract refuses never reaches the database, so no
/// stored record can outgrow [`crate::grpc::key_record::MAX_RECORD_BYTES`]); it has no
/// rate limit of its own.
pub async fn create(pool: &PgPool, actor: Actor, key: NewKey) -> Result<CreatedKey, KeyError> {
    let mut transaction = pool.begin().await?;
    let created = create_on(&mut transaction, actor, key).await?;
    transaction.commit().await?;
    Ok(created)
}

/// As [`create`], inside a transaction the caller holds and commits (the key and its
/// audit record must commit together).
pub async fn create_on(
    connection: &mut PgConnection,
    actor: Actor,
    key: NewKey,
) -> Result<CreatedKey, KeyError> {
    let allowed_networks = key.allowed_networks.texts();
    let row = KeyToInsert {
        org_id: key.org_id,
        name: key.name.as_str(),
        environment: key.environment,
        expires_at: key.expires_at,
        rotated_from: None,
        rate_limit: (None, None),
        scopes: key.scopes.as_slice(),
        allowed_networks: &allowed_networks,
        metadata: key.metadata.as_ref().map(Metadata::as_str),
        actor,
    };
    let created =
        insert_key(&mut *connection, row)
            .await
            .map_err(|error| match violation(&error) {
                Some(Violation::ForeignKey) => KeyError::OrgNotFound(key.org_id),
                _ => KeyError::Database(error),
            })?;
    audit::record(
        connection,
        actor,
        Change {
            action: AuditAction::KeyCreated,
            object_id: created.key_id,
            org_id: Some(created.org_id),
            old_value: Absent,
            new_value: AuditedKey::of_created(&created),
        },
    )
    .await?;
    Ok(created)
}

/// A key with its limit and quota, as listed. The columns of [`ListedKeyRow`], with the
/// parameters of [`quotas::listing`] (`$1` to `$3`): a key's quota follows its
/// organization's reset day (1 when the organization has no quota), and its use is
/// that period's.
const KEY_SELECT: &str = "SELECT k.id, k.org_id, k.name, k.key_prefix, k.created_at, \
            k.expires_at, k.revoked_at, k.active, k.leaked_at, \
            k.rate_limit_rpm AS key_rpm, k.rate_limit_burst AS key_burst, \
            r.requests_per_minute AS org_rpm, r.burst AS org_burst, \
            q.monthly_limit AS quota_monthly, \
            coalesce(oq.reset_day, 1::smallint) AS quota_reset_day, u.used AS quota_used, \
            k.scopes, k.allowed_networks::text[] AS allowed_networks, \
            lu.last_used_at, k.imported, k.metadata::text AS metadata \
     FROM api_keys k LEFT JOIN rate_limit_configs r ON r.org_id = k.org_id \
     LEFT JOIN api_key_last_used lu ON lu.key_id = k.id \
     LEFT JOIN quotas q ON q.subject_kind = $3 AND q.subject_id = k.id \
     LEFT JOIN quotas oq ON oq.subject_kind = $2 AND oq.subject_id = k.org_id \
     LEFT JOIN quota_usage u ON u.subject_kind = $3 AND u.subject_id = k.id \
         AND u.period_start = ($1::timestamptz[])[coalesce(oq.reset_day, 1)]";

/// [`KeyFilter::unused_since`] as `$6` (NULL: every key).
const UNUSED_SINCE: &str = "($6::timestamptz IS NULL OR (k.created_at <= $6 \
     AND (lu.last_used_at IS NULL OR lu.last_used_at < $6)))";

/// The organization's keys, oldest first, as listed now (all pages); an unknown
/// organization is an error rather than an empty list, so a typo in the id does not look
/// like "no keys".
pub async fn list_for_org(
    pool: &PgPool,
    org_id: Uuid,
    filter: KeyFilter,
) -> Result<Vec<ListedKey>, KeyError> {
    let mut all = Vec::new();
    let mut page = PageRequest::first();
    loop {
        let listed = list_page(pool, org_id, filter, page).await?;
        all.extend(listed.items);
        match listed.next_cursor {
            Some(next) => page = page.next(&next),
            None => return Ok(all),
        }
    }
}

/// A page of the organization's keys, oldest first, as listed now, and where the next
/// page starts; an unknown organization is an error.
pub async fn list_page(
    pool: &PgPool,
    org_id: Uuid,
    filter: KeyFilter,
    page: PageRequest,
) -> Result<KeyPage, KeyError> {
    if page.after.is_none() && !orgs::exists(pool, org_id).await? {
        return Err(KeyError::OrgNotFound(org_id));
    }
    let now = Utc::now();
    let rows: Vec<ListedKeyRow> = match page.after {
        None => {
            let sql = format!(
                "{KEY_SELECT} WHERE k.org_id = $4 AND {UNUSED_SINCE} \
                 ORDER BY k.created_at, k.id LIMIT $5"
            );
            quotas::listing(AssertSqlSafe(sql), now)
                .bind(org_id)
                .bind(page.fetch())
                .bind(filter.unused_since)
                .fetch_all(pool)
                .await?
        }
        Some(after) => {
            let sql = format!(
                "{KEY_SELECT} WHERE k.org_id = $4 AND {UNUSED_SINCE} \
                 AND (k.created_at, k.id) > ($7, $8) ORDER BY k.created_at, k.id LIMIT $5"
            );
            quotas::listing(AssertSqlSafe(sql), now)
                .bind(org_id)
                .bind(page.fetch())
                .bind(filter.unused_since)
                .bind(after.created_at)
                .bind(after.id)
                .fetch_all(pool)
                .await?
        }
    };
    let (rows, next_cursor) = page.cut(rows, |row| (row.info.created_at, row.info.id));
    Ok(KeyPage {
        items: rows
            .into_iter()
            .map(|row| row.into_listed(now))
            .collect::<Result<_, KeyError>>()?,
        next_cursor,
    })
}

/// One key as listed now.
pub async fn get(pool: &PgPool, id: Uuid) -> Result<ListedKey, KeyError> {
    let now = Utc::now();
    let sql = format!("{KEY_SELECT} WHERE k.id = $4");
    let row: ListedKeyRow = quotas::listing(AssertSqlSafe(sql), now)
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(KeyError::NotFound(id))?;
    row.into_listed(now)
}

/// Replaces key `old_id` in one transaction: locks it (it must exist, be active,
/// unexpired and not rotated before), inserts a new key for the same organization, name,
/// environment, own rate limit (if any), scopes and allowlist with `rotated_from`
/// pointing at it (a replacement must not work where the old key did not), and
/// revokes the old key or moves its expiry to the end of the grace period, and records
/// one `key.rotated` (on the old key). Both writes share one revision, so keysync sees
/// them together. Of two rotations of one key at
/// the same time, the second waits for the first's lock and then finds the key rotated:
/// one new key, never two.
pub async fn rotate(
    pool: &PgPool,
    actor: Actor,
    old_id: Uuid,
    new_expires_at: Option<DateTime<Utc>>,
    fate: OldKeyFate,
) -> Result<RotatedKey, KeyError> {
    let mut transaction = pool.begin().await?;
    let rotated = rotate_on(&mut transaction, actor, old_id, new_expires_at, fate).await?;
    transaction.commit().await?;
    Ok(rotated)
}

/// As [`rotate`], inside a transaction the caller holds and commits.
pub async fn rotate_on(
    transaction: &mut PgConnection,
    actor: Actor,
    old_id: Uuid,
    new_expires_at: Option<DateTime<Utc>>,
    fate: OldKeyFate,
) -> Result<RotatedKey, KeyError> {
    let old: RotatedRow = sqlx::query_as(
        "SELECT org_id, name, key_prefix, expires_at, active, \
                COALESCE(expires_at <= now(), false) AS expired, \
                rate_limit_rpm, rate_limit_burst, \
                scopes, allowed_networks::text[] AS allowed_networks, \
                metadata::text AS metadata \
         FROM api_keys WHERE id = $1 FOR UPDATE",
    )
    .bind(old_id)
    .fetch_optional(&mut *transaction)
    .await?
    .ok_or(KeyError::NotFound(old_id))?;
    if !old.active {
        return Err(KeyError::Revoked(old_id));
    }
    if old.expired {
        return Err(KeyError::Expired(old_id));
    }
    let successor: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM api_keys WHERE rotated_from = $1 LIMIT 1")
            .bind(old_id)
            .fetch_optional(&mut *transaction)
            .await?;
    if let Some(successor) = successor {
        return Err(KeyError::AlreadyRotated {
            id: old_id,
            successor,
        });
    }
    let environment =
        KeyEnvironment::of_key(&old.key_prefix).ok_or_else(|| KeyError::UnknownEnvironment {
            id: old_id,
            prefix: old.key_prefix.clone(),
        })?;

    let new_key = insert_key(
        &mut *transaction,
        KeyToInsert {
            org_id: old.org_id,
            name: &old.name,
            environment,
            expires_at: new_expires_at,
            rotated_from: Some(old_id),
            rate_limit: (old.rate_limit_rpm, old.rate_limit_burst),
            scopes: &old.policy.scopes,
            allowed_networks: &old.policy.allowed_networks,
            metadata: old.metadata.as_deref(),
            actor,
        },
    )
    .await?;

    let (old_key_stops_at, old_key_revoked) = match fate {
        OldKeyFate::RevokeNow => {
            let revoked_at: DateTime<Utc> = sqlx::query_scalar(
                "UPDATE api_keys SET active = false, revoked_at = now(), changed_by_token = $2 \
                 WHERE id = $1 RETURNING revoked_at",
            )
            .bind(old_id)
            .bind(actor.token_id())
            .fetch_one(&mut *transaction)
            .await?;
            (revoked_at, true)
        }
        OldKeyFate::ExpireBy(at) => match old.expires_at {
            Some(sooner) if sooner <= at => (sooner, false),
            _ => {
                sqlx::query(
                    "UPDATE api_keys SET expires_at = $2, changed_by_token = $3 WHERE id = $1",
                )
                .bind(old_id)
                .bind(at)
                .bind(actor.token_id())
                .execute(&mut *transaction)
                .await?;
                (at, false)
            }
        },
    };
    audit::record(
        transaction,
        actor,
        Change {
            action: AuditAction::KeyRotated,
            object_id: old_id,
            org_id: Some(old.org_id),
            old_value: AuditedKey::new(
                &old.name,
                &old.key_prefix,
                old.expires_at,
                KeyStatus::Active,
            ),
            new_value: AuditedRotation {
                old_key_id: old_id,
                new_key_id: new_key.key_id,
                old_key_expires_at: Timestamp(old_key_stops_at),
                old_key_status: if old_key_revoked {
                    KeyStatus::Revoked
                } else {
                    KeyStatus::Active
                },
                new_key: AuditedKey::of_created(&new_key),
            },
        },
    )
    .await?;
    Ok(RotatedKey {
        new_key,
        old_key_id: old_id,
        old_key_expires_at: Timestamp(old_key_stops_at),
        old_key_revoked,
    })
}

#[derive(sqlx::FromRow)]
struct RevokedRow {
    org_id: Uuid,
    name: String,
    key_prefix: String,
    expires_at: Option<DateTime<Utc>>,
    /// Whether it had expired before it was revoked.
    expired: bool,
}

/// Marks the key inactive; keysync drops it from every key set at the next catch-up.
/// Only a key that was active is recorded in the audit trail.
pub async fn revoke(pool: &PgPool, actor: Actor, id: Uuid) -> Result<RevokedKey, KeyError> {
    let mut transaction = pool.begin().await?;
    let revoked: Option<RevokedRow> = sqlx::query_as(
        "UPDATE api_keys SET active = false, revoked_at = now(), changed_by_token = $2 \
         WHERE id = $1 AND active \
         RETURNING org_id, name, key_prefix, expires_at, \
                   COALESCE(expires_at <= now(), false) AS expired",
    )
    .bind(id)
    .bind(actor.token_id())
    .fetch_optional(&mut *transaction)
    .await?;
    let revocation = if let Some(row) = revoked {
        let before = AuditedKey::new(
            &row.name,
            &row.key_prefix,
            row.expires_at,
            if row.expired {
                KeyStatus::Expired
            } else {
                KeyStatus::Active
            },
        );
        let after = AuditedKey {
            status: KeyStatus::Revoked,
            ..before.clone()
        };
        audit::record(
            &mut transaction,
            actor,
            Change {
                action: AuditAction::KeyRevoked,
                object_id: id,
                org_id: Some(row.org_id),
                old_value: before,
                new_value: after,
            },
        )
        .await?;
        Revocation::Revoked
    } else if sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM api_keys WHERE id = $1)")
        .bind(id)
        .fetch_one(&mut *transaction)
        .await?
    {
        Revocation::AlreadyRevoked
    } else {
        return Err(KeyError::NotFound(id));
    };
    transaction.commit().await?;
    Ok(RevokedKey {
        key_id: id,
        revocation,
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn info(active: bool, expires_at: Option<DateTime<Utc>>) -> ApiKeyInfo {
        ApiKeyInfo {
            id: Uuid::nil(),
            org_id: Uuid::nil(),
            name: "k".to_owned(),
            key_prefix: "sk_live_AbCd".to_owned(),
            created_at: Utc::now(),
            expires_at,
            revoked_at: None,
            active,
            leaked_at: None,
        }
    }

    #[test]
    fn status_reflects_revocation_then_expiry() {
        let now = Utc::now();
        let past = Some(now - TimeDelta::seconds(1));
        let future = Some(now + TimeDelta::seconds(60));
        assert_eq!(info(true, None).status(now), KeyStatus::Active);
        assert_eq!(info(true, future).status(now), KeyStatus::Active);
        assert_eq!(info(true, past).status(now), KeyStatus::Expired);
        assert_eq!(info(true, Some(now)).status(now), KeyStatus::Expired);
        assert_eq!(info(false, past).status(now), KeyStatus::Revoked);
        assert_eq!(info(false, None).status(now).as_str(), "revoked");
    }

    #[test]
    fn an_audited_key_is_what_operators_see_never_its_secret() {
        let secret = KeySecret::generate(KeyEnvironment::Test);
        let created = CreatedKey {
            key_id: Uuid::from_u128(1),
            org_id: Uuid::from_u128(2),
            name: "ci".to_owned(),
            prefix: secret.prefix().to_owned(),
            expires_at: None,
            scopes: Vec::new(),
            allowed_networks: Vec::new(),
            metadata: None,
            key: secret,
        };
        let audited = serde_json::to_value(AuditedKey::of_created(&created)).unwrap();
        assert_eq!(
            audited,
            serde_json::json!({
                "name": "ci",
                "prefix": created.prefix,
                "environment": "test",
                "expires_at": null,
                "status": "active",
            })
        );
        let text = audited.to_string();
        assert!(!text.contains(created.key.secret()), "{text}");
        assert!(
            !text.contains(&hex::encode(created.key.hash().as_bytes())),
            "{text}"
        );
        let legacy = AuditedKey::new("old", "ak_AbCdEfGh", None, KeyStatus::Expired);
        assert_eq!(legacy.environment, None);
    }

    #[test]
    fn statuses_serialize_as_listed() {
        for status in [KeyStatus::Active, KeyStatus::Revoked, KeyStatus::Expired] {
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
        }
    }
}
