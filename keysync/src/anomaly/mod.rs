//! Anomaly detection: `keysync serve` watches each organization's hourly traffic (the
//! `usage_hourly` rollup) against its own baseline, the same hour of the week over the
//! last weeks, and raises an alert when it departs from it: a spike of requests, a drop
//! to near zero of a busy hour, a jump in the share of requests refused by the gateway
//! or answered 5xx by the upstream ([`kind`], [`judgement`]).
//!
//! An evaluation ([`evaluation`]) reads the sums it needs in one statement
//! ([`hourly_sums`]), judges every organization whose traffic reaches back far enough,
//! and stores what it found in `anomaly_alerts`, one alert per organization, kind and
//! hour however often the hour is judged and however many keysync replicas judge it
//! ([`alert`]). The alerts it stored are announced ([`announce`]): logged, counted
//! ([`metrics`]) and published on the usage export ([`event`]). [`detector`] runs
//! evaluations periodically with the [`settings`] read from `KEYSYNC_ANOMALY_*`.
//! Listing alerts is [`crate::operations::alerts`]'s.

pub mod alert;
pub mod announce;
pub mod detector;
pub mod evaluation;
pub mod event;
pub mod hourly_sums;
pub mod judgement;
pub mod kind;
pub mod metrics;
pub mod settings;
