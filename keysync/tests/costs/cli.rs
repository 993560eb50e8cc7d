//! `keysync plans`, `orgs set-plan` and `usage --cost`, the binary against PostgreSQL.

use chrono::{DurationRound, TimeDelta};
use keysync::billing::period::BillingPeriod;
use keysync::operations::timestamp::Timestamp;

use super::*;
use crate::common::{json, migrated_database, ok, sql};

#[test]
fn plans_are_created_listed_shown_and_archived_and_audited() {
    let (postgres, url) = migrated_database();
    let text = ok(
        &url,
        &[
            "plans",
            "create",
            "--name",
            "pro",
            "--currency",
            "eur",
            "--base-fee",
            "49",
            "--included",
            "1000000",
            "--tier",
            "10000000:0.5",
            "--tier",
            "inf:0.30",
            "--weight",
            "search=5",
        ],
    );
    assert!(text.starts_with("plan pro ("), "{text}");
    assert!(
        text.contains("\ncurrency: EUR\nbase fee: 49.00 a month\nincluded: 1000000 units\n"),
        "{text}"
    );
    assert!(
        text.contains("\ntier 1000001-10000000: 0.50 per 1000\ntier 10000001-: 0.30 per 1000\n"),
        "{text}"
    );
    assert!(text.contains("\nweights: search=5 (others 1)\n"), "{text}");
    let starter = plan(&url, STARTER);

    let shown = json(&url, &["plans", "show", "pro", "--json"]);
    assert_eq!(shown["base_fee_minor"], 4900);
    assert_eq!(shown["tiers"][0]["price_per_1000_minor"], 50);
    assert_eq!(shown["tiers"][1]["up_to"], Value::Null);
    assert_eq!(shown["weights"]["search"], 5);
    assert_eq!(shown["archived_at"], Value::Null);
    let by_id = json(&url, &["plans", "show", &starter.to_string(), "--json"]);
    assert_eq!(by_id["name"], "starter");
    // Stored as integers in minor units, never a fraction.
    assert_eq!(
        sql(&postgres, &url, "SELECT base_fee_minor, tiers::text FROM price_plans WHERE name = 'pro'"),
        "4900|[{\"up_to\": 10000000, \"price_per_1000_minor\": 50}, {\"up_to\": null, \"price_per_1000_minor\": 30}]"
    );

    let listed = ok(&url, &["plans", "list"]);
    let rows: Vec<Vec<&str>> = listed
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["ID", "NAME", "CURRENCY", "BASE_FEE", "INCLUDED", "TIERS", "WEIGHTS", "ARCHIVED"]
    );
    assert_eq!(
        rows[1][1..],
        [
            "pro",
            "EUR",
            "49.00",
            "1000000",
            "10000000:0.50,inf:0.30",
            "search=5",
            "-"
        ]
    );
    assert_eq!(rows[2][1..4], ["starter", "EUR", "10.00"]);

    let archived = ok(&url, &["plans", "archive", "starter"]);
    assert_eq!(archived, format!("archived plan starter ({starter})\n"));
    let again = ok(&url, &["plans", "archive", &starter.to_string()]);
    assert_eq!(
        again,
        format!("archived plan starter ({starter}) (unchanged)\n")
    );
    let active = json(&url, &["plans", "list", "--json"]);
    assert_eq!(active.as_array().unwrap().len(), 1);
    let all = json(&url, &["plans", "list", "--archived", "--json"]);
    assert!(all[1]["archived_at"].is_string(), "{all}");

    // Two creates and one archive: three records; the archive that changed nothing, none.
    assert_eq!(
        sql(
            &postgres,
            &url,
            "SELECT action, object_type, org_id IS NULL, new_value->>'archived' \
             FROM audit_events WHERE object_type = 'plan' ORDER BY at, action DESC"
        ),
        "plan.created|plan|t|false\nplan.created|plan|t|false\nplan.archived|plan|t|true"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_costs_the_hand_computed_invoice() {
    let (_postgres, url) = migrated_database();
    let pool = pool(&url).await;
    let (starter, pro) = (plan(&url, STARTER), plan(&url, PRO));
    let acme = org(&url, "acme");
    // A quota with its own reset day changes nothing to the calendar month billed.
    ok(
        &url,
        &[
            "orgs",
            "set-quota",
            &acme.to_string(),
            "--monthly",
            "100000",
            "--reset-day",
            "15",
        ],
    );
    november(&pool, acme, starter, pro).await;

    let invoice = cost_json(&url, acme, "2026-11");
    assert_november(&invoice, acme);
    assert_eq!(invoice["closed"], true);

    let text = cost(&url, acme, "2026-11", &[]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "invoice: organization {acme}, period 2026-11 (2026-11-01T00:00:00Z to \
             2026-12-01T00:00:00Z), EUR, closed"
        )
    );
    assert!(lines[1].starts_with("plan starter ("), "{text}");
    assert!(
        lines[1].ends_with("): 2026-11-01T00:00:00Z to 2026-11-16T00:00:00Z, 360 of 720 hours"),
        "{text}"
    );
    let cells = |line: &str| -> Vec<String> {
        line.split("  ")
            .map(str::trim)
            .filter(|cell| !cell.is_empty())
            .map(str::to_owned)
            .collect()
    };
    assert!(text.contains("endpoint search"), "{text}");
    let tier = lines
        .iter()
        .find(|line| line.starts_with("units 500001-5000000"))
        .unwrap();
    assert_eq!(
        cells(tier),
        [
            "units 500001-5000000",
            "800010 units",
            "0.50/1000",
            "400.01"
        ]
    );
    assert!(lines.contains(&"amount: 35.50"), "{text}");
    assert!(lines.contains(&"amount: 424.51"), "{text}");
    assert_eq!(lines.last(), Some(&"total: 460.01 EUR"));

    // A month without usage costs the base fee: starter alone in October.
    let october = cost_json(&url, acme, "2026-10");
    assert_eq!(october["segments"].as_array().unwrap().len(), 1);
    assert_eq!(october["segments"][0]["units"], 0);
    assert_eq!(october["total"], "10.00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_change_waits_for_the_next_period_unless_now() {
    let (postgres, url) = migrated_database();
    let (starter, pro) = (plan(&url, STARTER), plan(&url, PRO));
    let acme = org(&url, "acme");
    let acme_text = acme.to_string();
    let before = Utc::now();
    let hour =
        |at: DateTime<Utc>| Timestamp(at.duration_trunc(TimeDelta::hours(1)).unwrap()).to_string();

    // The first plan takes effect at once, from this hour.
    let first = json(&url, &["orgs", "set-plan", &acme_text, "starter", "--json"]);
    let this_hour = first["effective_from"].as_str().unwrap().to_owned();
    assert!(
        [hour(before), hour(Utc::now())].contains(&this_hour),
        "{first}"
    );
    assert_eq!(first["current"]["plan_id"], starter.to_string());
    assert_eq!(first["changed"], true);

    // A change waits for the first of next month.
    let next_period = Timestamp(BillingPeriod::containing(Utc::now()).end).to_string();
    let text = ok(&url, &["orgs", "set-plan", &acme_text, "pro"]);
    assert_eq!(
        text,
        format!(
            "organization {acme}: plan pro ({pro}) from {next_period}\n\
             current: starter ({starter}) since {this_hour}\n\
             scheduled: pro ({pro}) from {next_period}\n"
        )
    );
    let again = ok(&url, &["orgs", "set-plan", &acme_text, "pro"]);
    assert!(
        again.starts_with(&format!(
            "organization {acme}: plan pro ({pro}) from {next_period} (unchanged)\n"
        )),
        "{again}"
    );

    let shown = ok(&url, &["orgs", "plan", &acme_text]);
    assert_eq!(
        shown,
        format!(
            "organization {acme}\n\
             current: starter ({starter}) since {this_hour}\n\
             scheduled: pro ({pro}) from {next_period}\n"
        )
    );
    let shown = json(&url, &["orgs", "plan", &acme_text, "--json"]);
    assert_eq!(shown["current"]["plan_name"], "starter");
    assert_eq!(shown["scheduled"][0]["from"], next_period.as_str());
    let none = org(&url, "none");
    assert_eq!(
        ok(&url, &["orgs", "plan", &none.to_string()]),
        format!("organization {none}: no price plan\n")
    );

    // This month is still starter's, whole.
    let now = json(&url, &["usage", "--org-id", &acme_text, "--cost", "--json"]);
    assert_eq!(now["closed"], false);
    assert_eq!(now["segments"].as_array().unwrap().len(), 1);
    assert_eq!(now["segments"][0]["plan_name"], "starter");

    // --now: from this hour, replacing the scheduled change.
    let at_once = json(
        &url,
        &["orgs", "set-plan", &acme_text, "pro", "--now", "--json"],
    );
    assert_eq!(at_once["effective_from"], this_hour);
    assert_eq!(at_once["current"]["plan_name"], "pro");
    assert_eq!(at_once["scheduled"], serde_json::json!([]));
    assert_eq!(
        sql(
            &postgres,
            &url,
            &format!("SELECT count(*) FROM org_plans WHERE org_id = '{acme}'")
        ),
        "1",
        "the first plan replaced: it took effect this same hour"
    );

    // Audited with what was scheduled from the instant on and what is now.
    let trail = sql(
        &postgres,
        &url,
        &format!(
            "SELECT old_value::text, new_value::text FROM audit_events \
             WHERE action = 'org.plan_set' AND object_id = '{acme}' ORDER BY at"
        ),
    );
    let records: Vec<&str> = trail.lines().collect();
    assert_eq!(records.len(), 3, "{trail}");
    assert_eq!(
        records[0],
        format!("{{\"entries\": []}}|{{\"entries\": [{{\"from\": \"{this_hour}\", \"plan_id\": \"{starter}\"}}]}}")
    );
    assert_eq!(
        records[1],
        format!(
            "{{\"entries\": [{{\"from\": \"{next_period}\", \"plan_id\": \"{starter}\"}}]}}|\
             {{\"entries\": [{{\"from\": \"{next_period}\", \"plan_id\": \"{pro}\"}}]}}"
        )
    );
    assert_eq!(
        records[2],
        format!(
            "{{\"entries\": [{{\"from\": \"{this_hour}\", \"plan_id\": \"{starter}\"}}, \
             {{\"from\": \"{next_period}\", \"plan_id\": \"{pro}\"}}]}}|\
             {{\"entries\": [{{\"from\": \"{this_hour}\", \"plan_id\": \"{pro}\"}}]}}"
        )
    );
}
