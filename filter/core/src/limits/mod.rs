//! What limits a valid key's requests beyond its validity, enforced in every worker from
//! state shared through the store every worker sees:
//!
//! - [`local_rate_limit`]: requests per minute, exact across one Envoy's workers;
//! - [`quota`]: monthly quotas, admitted against leases keysync grants;
//! - [`quota_sync`]: the sync service's half of quotas, claiming those leases;
//! - [`subject_slot`]: where a subject's state lives among the bounded slots.

pub mod local_rate_limit;
pub mod quota;
pub mod quota_sync;
pub mod subject_slot;
