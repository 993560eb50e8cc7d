//! What operators do to organizations, keys, rate limits and quotas: the database
//! operations, each with its validation and its transaction, returning a typed result
//! that serializes (serde) to what `--json` prints.
//!
//! The CLI ([`crate::cli`]) only parses arguments, calls one of these and renders the
//! result; the HTTP API ([`crate::admin_api`]) calls the same functions and serializes
//! the same results. Every change names its [`actor::Actor`] (the CLI, or an admin
//! token of the API), recorded in the rows it writes and, when something changed, in
//! the audit trail ([`audit`]) in the change's own transaction. Inputs that need
//! checking arrive as checked types ([`name::Name`], [`limits::LimitChange`],
//! [`quotas::Monthly`], [`quotas::ResetDay`], [`key_policy::Scopes`],
//! [`key_policy::Allowlist`], the instants of [`durations`]), so every caller validates
//! the same way, and can do so before it connects. Lists
//! come in pages ([`page`]). [`usage`] reads what the gateways metered, [`alerts`] the
//! anomalies keysync found in it. [`plans`] are price plans, [`org_plans`] the plan
//! each organization is on, and [`invoices`] what its usage costs on them (the
//! arithmetic is [`crate::billing`]'s). [`webhooks`] are the endpoints told of key
//! changes (the audit trail queues their deliveries: [`crate::webhooks`]).

pub mod actor;
pub mod admin_tokens;
pub mod alerts;
pub mod audit;
pub mod audited_write;
pub mod durations;
pub mod external_id;
pub mod field_change;
pub mod fleet_usage;
pub mod invoices;
pub mod key_import;
pub mod key_metadata;
pub mod key_policy;
pub mod key_secret;
pub mod keys;
pub mod leaks;
pub mod limit_json;
pub mod limits;
pub mod metadata;
pub mod name;
pub mod org_plans;
pub mod org_update;
pub mod orgs;
pub mod page;
pub mod plans;
pub mod quotas;
pub mod sql_state;
pub mod timestamp;
pub mod usage;
pub mod webhooks;
