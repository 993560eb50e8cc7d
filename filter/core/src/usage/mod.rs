//! Usage metering, the gateway's side: each recognized key's requests counted by (org,
//! key, endpoint, outcome) at no host call on the request path beyond reading the
//! route's name, merged by the workers into shared counters, and reported to keysync by
//! the sync service.
//!
//! - [`counters`]: a worker's tally and the shared counters it merges into;
//! - [`endpoints`]: the route names counted, and their bound;
//! - [`metering`]: whether metering is on, and the instance the counters belong to;
//! - [`duration_sample`]: which requests are timed;
//! - [`flush`]: the sync service's reports (`ReportUsage`).

pub mod counters;
pub mod duration_sample;
pub mod endpoints;
pub mod flush;
pub mod metering;
