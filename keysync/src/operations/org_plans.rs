//! Putting an organization on a price plan (`keysync orgs set-plan`,
//! `PUT /v1/orgs/{org_id}/plan`), and reading which plan it is on (`keysync orgs plan`,
//! `GET /v1/orgs/{org_id}/plan`).
//!
//! A change takes effect at the start of the next period, or at once with `--now` (from
//! the start of the current hour), and an organization's first plan at once
//! ([`crate::billing::schedule::takes_effect`]). It replaces the changes scheduled
//! from that instant on. Made through [`super::audited_write`]: the value is the
//! organization's plans from that instant on, so the audit trail records what was
//! scheduled and what is now, and asking for what is already scheduled records nothing.
//!
//! An archived plan is refused, and so is a change at once to a plan in another
//! currency than the period's (an invoice is in one currency): such a change waits for
//! the next period.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::actor::Actor;
use super::audit::AuditAction;
use super::audited_write::{self, AuditedWrite};
use super::plans::{self, PlanError, PlanRef};
use super::timestamp::Timestamp;
use crate::billing::period::BillingPeriod;
use crate::billing::schedule::{self, PlanChange};
use crate::billing::store;

#[derive(Debug, thiserror::Error)]
pub enum OrgPlanError {
    #[error("organization {0} not found")]
    OrgNotFound(Uuid),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(
        "plan '{plan}' is in {currency}, the organization's plan this period in {current}: \
         a change of currency takes effect at the next period (leave out --now)"
    )]
    CurrencyChange {
        plan: String,
        currency: String,
        current: String,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl From<store::StoreError> for OrgPlanError {
    fn from(error: store::StoreError) -> OrgPlanError {
        OrgPlanError::Plan(error.into())
    }
}

/// A plan as an organization's answer names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ScheduledPlan {
    /// From when (a whole hour, UTC).
    #[schema(value_type = String, format = DateTime)]
    pub from: Timestamp,
    pub plan_id: Uuid,
    pub plan_name: String,
}

/// An organization's plan after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OrgPlanOutcome {
    pub org_id: Uuid,
    /// When the plan asked for takes effect.
    #[schema(value_type = String, format = DateTime)]
    pub effective_from: Timestamp,
    /// The plan in effect now; `null` before the first takes effect.
    pub current: Option<ScheduledPlan>,
    /// The changes scheduled after now.
    pub scheduled: Vec<ScheduledPlan>,
    /// False when that plan was already scheduled from then; nothing was written.
    pub changed: bool,
}

/// The plan an organization is on, and the changes scheduled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OrgPlans {
    pub org_id: Uuid,
    /// The plan in effect now; `null` when it has none.
    pub current: Option<ScheduledPlan>,
    /// The changes scheduled after now.
    pub scheduled: Vec<ScheduledPlan>,
}

/// The plan `org_id` is on at `now`, and the changes scheduled after it.
pub async fn get(
    pool: &PgPool,
    org_id: Uuid,
    now: DateTime<Utc>,
) -> Result<OrgPlans, OrgPlanError> {
    let mut connection = pool.acquire().await?;
    if !super::orgs::exists(&mut *connection, org_id).await? {
        return Err(OrgPlanError::OrgNotFound(org_id));
    }
    let (current, scheduled) = plans_of(&mut connection, org_id, now).await?;
    Ok(OrgPlans {
        org_id,
        current,
        scheduled,
    })
}

/// The organization's plans from an instant on: the one in effect then, and the later
/// changes, as written and audited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct PlansFrom {
    /// The instant the change asked for takes effect.
    #[serde(skip)]
    from: DateTime<Utc>,
    entries: Vec<AuditedChange>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
struct AuditedChange {
    #[serde(serialize_with = "timestamp")]
    from: DateTime<Utc>,
    plan_id: Uuid,
}

fn timestamp<S: serde::Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    Timestamp(*at).serialize(serializer)
}

/// Puts `org_id` on the plan `plan` names, at `now` (`at_once`: from the current hour).
pub async fn set_org_plan(
    pool: &PgPool,
    actor: Actor,
    org_id: Uuid,
    plan: &PlanRef,
    at_once: bool,
    now: DateTime<Utc>,
) -> Result<OrgPlanOutcome, OrgPlanError> {
    let mut connection = pool.acquire().await?;
    let stored = plans::find(&mut connection, plan, "").await?;
    drop(connection);
    if stored.archived_at.is_some() {
        return Err(PlanError::Archived(stored.plan.name).into());
    }
    let write = OrgPlanWrite {
        org_id,
        plan_id: stored.plan.id,
        plan_name: stored.plan.name.clone(),
        currency: stored.plan.terms.currency().code(),
        at_once,
        now,
    };
    let applied = audited_write::apply(pool, actor, &write).await?;
    let (effective_from, current, scheduled) = applied.answer;
    Ok(OrgPlanOutcome {
        org_id,
        effective_from: Timestamp(effective_from),
        current,
        scheduled,
        changed: applied.changed,
    })
}

struct OrgPlanWrite {
    org_id: Uuid,
    plan_id: Uuid,
    plan_name: String,
    currency: &'static str,
    at_once: bool,
    now: DateTime<Utc>,
}

impl OrgPlanWrite {
    /// When the change takes effect, given the organization's changes.
    fn effective_from(&self, changes: &[PlanChange]) -> DateTime<Utc> {
        let has_plan = schedule::plan_at(changes, self.now).is_some();
        schedule::takes_effect(self.now, self.at_once, has_plan)
    }
}

impl AuditedWrite for OrgPlanWrite {
    type Value = PlansFrom;
    type Audited = PlansFrom;
    /// When it takes effect, the plan in effect now and the changes after now.
    type Answer = (DateTime<Utc>, Option<ScheduledPlan>, Vec<ScheduledPlan>);
    type Error = OrgPlanError;

    fn action(&self) -> AuditAction {
        AuditAction::OrgPlanSet
    }

    fn object_id(&self) -> Uuid {
        self.org_id
    }

    async fn lock(&self, connection: &mut PgConnection) -> Result<Uuid, OrgPlanError> {
        audited_write::lock_org(connection, self.org_id)
            .await?
            .ok_or(OrgPlanError::OrgNotFound(self.org_id))?;
        Ok(self.org_id)
    }

    async fn read(
        &self,
        connection: &mut PgConnection,
        _: Uuid,
    ) -> Result<PlansFrom, OrgPlanError> {
        let changes = store::plan_changes(connection, self.org_id).await?;
        let from = self.effective_from(&changes);
        let mut entries: Vec<AuditedChange> = schedule::plan_at(&changes, from)
            .map(|plan_id| AuditedChange { from, plan_id })
            .into_iter()
            .collect();
        entries.extend(
            changes
                .iter()
                .filter(|change| change.from > from)
                .map(|change| AuditedChange {
                    from: change.from,
                    plan_id: change.plan_id,
                }),
        );
        Ok(PlansFrom { from, entries })
    }

    fn wanted(&self, current: &PlansFrom) -> PlansFrom {
        PlansFrom {
            from: current.from,
            entries: vec![AuditedChange {
                from: current.from,
                plan_id: self.plan_id,
            }],
        }
    }

    async fn write(
        &self,
        connection: &mut PgConnection,
        actor: Actor,
        org_id: Uuid,
        _: &PlansFrom,
        new: &PlansFrom,
    ) -> Result<(), OrgPlanError> {
        let Some(change) = new.entries.first() else {
            return Ok(());
        };
        // One currency a period: the plans of the period the change falls in, with it.
        let mut changes: Vec<PlanChange> = store::plan_changes(connection, org_id)
            .await?
            .into_iter()
            .filter(|earlier| earlier.from < change.from)
            .collect();
        changes.push(PlanChange {
            from: change.from,
            plan_id: change.plan_id,
        });
        let period = BillingPeriod::containing(change.from);
        let ids: Vec<Uuid> = schedule::segments(&changes, period)
            .iter()
            .map(|segment| segment.plan_id)
            .collect();
        let plans = store::plans(connection, &ids).await?;
        if let Some(other) = plans
            .values()
            .map(|plan| plan.plan.terms.currency().code())
            .find(|code| *code != self.currency)
        {
            return Err(OrgPlanError::CurrencyChange {
                plan: self.plan_name.clone(),
                currency: self.currency.to_owned(),
                current: other.to_owned(),
            });
        }
        sqlx::query("DELETE FROM org_plans WHERE org_id = $1 AND effective_from >= $2")
            .bind(org_id)
            .bind(change.from)
            .execute(&mut *connection)
            .await?;
        sqlx::query(
            "INSERT INTO org_plans (org_id, effective_from, plan_id, changed_by_token) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(org_id)
        .bind(change.from)
        .bind(change.plan_id)
        .bind(actor.token_id())
        .execute(&mut *connection)
        .await?;
        Ok(())
    }

    fn audited(&self, value: &PlansFrom) -> PlansFrom {
        value.clone()
    }

    async fn answer(
        &self,
        connection: &mut PgConnection,
        org_id: Uuid,
        value: &PlansFrom,
    ) -> Result<Self::Answer, OrgPlanError> {
        let (current, scheduled) = plans_of(connection, org_id, self.now).await?;
        Ok((value.from, current, scheduled))
    }
}

/// The plan `org_id` is on at `now`, and the changes scheduled after.
pub(crate) async fn plans_of(
    connection: &mut PgConnection,
    org_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(Option<ScheduledPlan>, Vec<ScheduledPlan>), OrgPlanError> {
    let changes = store::plan_changes(connection, org_id).await?;
    let current_from = changes
        .iter()
        .filter(|change| change.from <= now)
        .map(|change| change.from)
        .max();
    let shown: Vec<PlanChange> = changes
        .into_iter()
        .filter(|change| Some(change.from) == current_from || change.from > now)
        .collect();
    let ids: Vec<Uuid> = shown.iter().map(|change| change.plan_id).collect();
    let plans = store::plans(connection, &ids).await?;
    let mut current = None;
    let mut scheduled = Vec::new();
    for change in shown {
        let entry = ScheduledPlan {
            from: Timestamp(change.from),
            plan_id: change.plan_id,
            plan_name: plans
                .get(&change.plan_id)
                .map(|plan| plan.plan.name.clone())
                .unwrap_or_default(),
        };
        if change.from <= now {
            current = Some(entry);
        } else {
            scheduled.push(entry);
        }
    }
    Ok((current, scheduled))
}
