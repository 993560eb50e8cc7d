//! Bad input: one `error:` line, exit 1, nothing printed and nothing written.

use super::*;
use crate::common::{assert_one_line_error, keysync, migrated_database, ok, sql};

/// `plans create` with `extra` after a name and a currency.
fn create(url: &str, name: &str, currency: &str, extra: &[&str]) -> common::Run {
    let mut args = vec!["plans", "create", "--name", name, "--currency", currency];
    args.extend_from_slice(extra);
    keysync(Some(url), &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_plans_and_changes_are_one_line_errors_that_write_nothing() {
    let (postgres, url) = migrated_database();
    for (currency, extra, expected) in [
        (
            "EURO",
            &["--tier", "inf:1"][..],
            "unknown currency 'EURO': expected an ISO 4217 code",
        ),
        ("XAU", &["--tier", "inf:1"], "unknown currency 'XAU'"),
        (
            "EUR",
            &["--base-fee", "-5", "--tier", "inf:1"],
            "invalid --base-fee '-5': must not be negative",
        ),
        (
            "EUR",
            &["--tier", "inf:-0.10"],
            "invalid --tier 'inf:-0.10': must not be negative",
        ),
        (
            "JPY",
            &["--base-fee", "1.5", "--tier", "inf:1"],
            "invalid --base-fee '1.5': JPY has 0 decimals",
        ),
        (
            "EUR",
            &["--included", "-1", "--tier", "inf:1"],
            "invalid included requests: must not be negative",
        ),
        (
            "EUR",
            &[
                "--included",
                "1000",
                "--tier",
                "1000:0.5",
                "--tier",
                "inf:0.3",
            ],
            "tiers not increasing: tier 1 goes up to 1000, not beyond 1000",
        ),
        (
            "EUR",
            &[
                "--tier", "5000:0.5", "--tier", "4000:0.4", "--tier", "inf:0.3",
            ],
            "tiers not increasing: tier 2 goes up to 4000, not beyond 5000",
        ),
        (
            "EUR",
            &["--tier", "5000:0.5"],
            "invalid tier 1: the last tier must have no bound (inf)",
        ),
        (
            "EUR",
            &[],
            "a plan needs tiers: at least one, the last without a bound (inf)",
        ),
        (
            "EUR",
            &["--tier", "inf:1", "--weight", "search v2=5"],
            "invalid weight endpoint 'search v2': not an endpoint name",
        ),
        (
            "EUR",
            &["--tier", "inf:1", "--weight", "search=-2"],
            "invalid weight of 'search': expected a whole number from 0 to 1000000",
        ),
    ] {
        let run = create(&url, "bad", currency, extra);
        assert_one_line_error(&run, expected);
    }
    assert_eq!(
        sql(&postgres, &url, "SELECT count(*) FROM price_plans"),
        "0"
    );

    let starter = plan(&url, STARTER);
    assert_one_line_error(
        &create(&url, "starter", "EUR", &["--tier", "inf:1"]),
        "plan 'starter' already exists",
    );
    let id_like = Uuid::new_v4().to_string();
    assert_one_line_error(
        &create(&url, &id_like, "EUR", &["--tier", "inf:1"]),
        "a name must not look like an id",
    );
    let _yen = plan(
        &url,
        &[
            "plans",
            "create",
            "--name",
            "yen",
            "--currency",
            "JPY",
            "--tier",
            "inf:5",
            "--json",
        ],
    );
    let old = plan(
        &url,
        &[
            "plans",
            "create",
            "--name",
            "old",
            "--currency",
            "EUR",
            "--tier",
            "inf:5",
            "--json",
        ],
    );
    ok(&url, &["plans", "archive", "old"]);

    let acme_id = org(&url, "acme");
    let acme = acme_id.to_string();
    assert_one_line_error(
        &keysync(Some(&url), &["orgs", "set-plan", &acme, "old"]),
        "plan 'old' is archived: no organization can be put on it",
    );
    assert_one_line_error(
        &keysync(Some(&url), &["orgs", "set-plan", &acme, &old.to_string()]),
        "plan 'old' is archived",
    );
    assert_one_line_error(
        &keysync(Some(&url), &["orgs", "set-plan", &acme, "gold"]),
        "plan 'gold' not found",
    );
    let nobody = Uuid::new_v4().to_string();
    assert_one_line_error(
        &keysync(Some(&url), &["orgs", "set-plan", &nobody, "starter"]),
        &format!("organization {nobody} not found"),
    );
    // No plan yet: the month cannot be priced, and says how to fix it.
    assert_one_line_error(
        &keysync(Some(&url), &["usage", "--org-id", &acme, "--cost"]),
        "has no price plan in",
    );
    // On starter since the month began (not this same hour, which --now would replace).
    let month_start = keysync::billing::period::BillingPeriod::containing(Utc::now()).start;
    plan_from(
        &pool(&url).await,
        acme_id,
        &month_start.to_rfc3339(),
        starter,
    )
    .await;
    // An invoice is in one currency: a change to yen waits for the next period.
    assert_one_line_error(
        &keysync(Some(&url), &["orgs", "set-plan", &acme, "yen", "--now"]),
        "plan 'yen' is in JPY, the organization's plan this period in EUR: a change of \
         currency takes effect at the next period",
    );
    ok(&url, &["orgs", "set-plan", &acme, "yen"]);
    assert_eq!(
        sql(
            &postgres,
            &url,
            &format!("SELECT count(*) FROM org_plans WHERE org_id = '{acme}'")
        ),
        "2"
    );

    for (args, expected) in [
        (
            &["--cost", "--period", "2026-13"][..],
            "invalid --period '2026-13': expected a month such as 2026-12",
        ),
        (&["--period", "2026-11"], "--period needs --cost"),
        (
            &["--cost", "--by", "day"],
            "--cost prices a whole month: it cannot be combined with",
        ),
        (&["--cost", "--since", "7d"], "--cost prices a whole month"),
    ] {
        let mut command = vec!["usage", "--org-id", &acme];
        command.extend_from_slice(args);
        assert_one_line_error(&keysync(Some(&url), &command), expected);
    }
    assert_one_line_error(
        &keysync(Some(&url), &["plans", "show", "gold"]),
        "plan 'gold' not found",
    );
    // Nothing of the refused commands reached the audit trail.
    assert_eq!(
        sql(&postgres, &url, "SELECT action, count(*) FROM audit_events WHERE action LIKE 'plan.%' OR action = 'org.plan_set' GROUP BY action ORDER BY action"),
        "org.plan_set|1\nplan.archived|1\nplan.created|3"
    );
}
