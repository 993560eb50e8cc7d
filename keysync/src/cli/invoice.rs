//! How `keysync usage --cost` prints an invoice: a heading, then for each part of the
//! period on one plan a table with a line for the base fee, each endpoint weight, the
//! included units and each tier, and its amount; then the total.

use std::io::{self, Write};

use super::render::Render;
use super::text_table::render;
use crate::billing::invoice::{Invoice, InvoiceSegment};
use crate::operations::timestamp::Timestamp;

impl Render for Invoice {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        let state = if self.closed {
            "closed"
        } else {
            "open (usage so far)"
        };
        writeln!(
            out,
            "invoice: organization {}, period {} ({} to {}), {}, {state}",
            self.org_id,
            self.period,
            Timestamp(self.from),
            Timestamp(self.to),
            self.currency
        )?;
        for segment in &self.segments {
            writeln!(
                out,
                "plan {} ({}): {} to {}, {} of {} hours",
                segment.plan_name,
                segment.plan_id,
                Timestamp(segment.from),
                Timestamp(segment.to),
                segment.hours,
                segment.period_hours
            )?;
            out.write_all(
                render(&["LINE", "QUANTITY", "PRICE", "AMOUNT"], &lines(segment)).as_bytes(),
            )?;
            writeln!(out, "amount: {}", segment.amount)?;
        }
        writeln!(out, "total: {} {}", self.total, self.currency)
    }
}

/// The rows of one segment's table.
fn lines(segment: &InvoiceSegment) -> Vec<Vec<String>> {
    let mut rows = vec![vec![
        "base fee".to_owned(),
        format!("{} of {} hours", segment.hours, segment.period_hours),
        "-".to_owned(),
        segment.base_fee.clone(),
    ]];
    for endpoint in &segment.endpoints {
        let name = endpoint.endpoint.as_deref().map_or_else(
            || "other endpoints".to_owned(),
            |name| format!("endpoint {name}"),
        );
        rows.push(vec![
            name,
            format!(
                "{} requests x {} = {} units",
                endpoint.requests, endpoint.weight, endpoint.units
            ),
            "-".to_owned(),
            "-".to_owned(),
        ]);
    }
    for tier in &segment.tiers {
        let range = match tier.last_unit {
            Some(last) => format!("units {}-{last}", tier.first_unit),
            None => format!("units {}-", tier.first_unit),
        };
        let line = if tier.included {
            format!("{range} (included)")
        } else {
            range
        };
        rows.push(vec![
            line,
            format!("{} units", tier.units),
            format!("{}/1000", tier.price_per_1000),
            tier.amount.clone(),
        ]);
    }
    rows
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use uuid::Uuid;

    use super::*;
    use crate::billing::currency::Currency;
    use crate::billing::invoice::{EndpointUnits, TierLine};
    use crate::cli::render::printed;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn tier(first: i64, last: Option<i64>, units: i64, price: &str, amount: &str) -> TierLine {
        TierLine {
            included: price == "0.00",
            first_unit: first,
            last_unit: last,
            units,
            price_per_1000_minor: 0,
            price_per_1000: price.to_owned(),
            amount_minor: 0,
            amount: amount.to_owned(),
        }
    }

    #[test]
    fn an_invoice_is_a_table_per_plan_and_the_total() {
        let invoice = Invoice {
            org_id: Uuid::nil(),
            period: "2026-12".to_owned(),
            from: at("2026-12-01T00:00:00Z"),
            to: at("2027-01-01T00:00:00Z"),
            closed: false,
            currency: Currency::parse("EUR").unwrap(),
            segments: vec![InvoiceSegment {
                plan_id: Uuid::from_u128(1),
                plan_name: "pro".to_owned(),
                from: at("2026-12-01T00:00:00Z"),
                to: at("2027-01-01T00:00:00Z"),
                hours: 744,
                period_hours: 744,
                base_fee_minor: 4900,
                base_fee: "49.00".to_owned(),
                endpoints: vec![
                    EndpointUnits {
                        endpoint: Some("search".to_owned()),
                        requests: 300_000,
                        weight: 5,
                        units: 1_500_000,
                    },
                    EndpointUnits {
                        endpoint: None,
                        requests: 700_000,
                        weight: 1,
                        units: 700_000,
                    },
                ],
                units: 2_200_000,
                tiers: vec![
                    tier(1, Some(1_000_000), 1_000_000, "0.00", "0.00"),
                    tier(1_000_001, Some(10_000_000), 1_200_000, "0.50", "600.00"),
                    tier(10_000_001, None, 0, "0.30", "0.00"),
                ],
                amount_minor: 64_900,
                amount: "649.00".to_owned(),
            }],
            total_minor: 64_900,
            total: "649.00".to_owned(),
        };
        let text = printed(&invoice, false);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("invoice: organization 00000000-"),
            "{text}"
        );
        assert!(lines[0].ends_with(", period 2026-12 (2026-12-01T00:00:00Z to 2027-01-01T00:00:00Z), EUR, open (usage so far)"), "{text}");
        assert!(lines[1].starts_with("plan pro ("), "{text}");
        let cells = |line: &str| {
            line.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(cells(lines[2]), ["LINE", "QUANTITY", "PRICE", "AMOUNT"]);
        assert_eq!(
            cells(lines[3]),
            ["base fee", "744 of 744 hours", "-", "49.00"]
        );
        assert_eq!(
            cells(lines[4]),
            [
                "endpoint search",
                "300000 requests x 5 = 1500000 units",
                "-",
                "-"
            ]
        );
        assert_eq!(
            cells(lines[5]),
            [
                "other endpoints",
                "700000 requests x 1 = 700000 units",
                "-",
                "-"
            ]
        );
        assert_eq!(
            cells(lines[6]),
            [
                "units 1-1000000 (included)",
                "1000000 units",
                "0.00/1000",
                "0.00"
            ]
        );
        assert_eq!(
            cells(lines[7]),
            [
                "units 1000001-10000000",
                "1200000 units",
                "0.50/1000",
                "600.00"
            ]
        );
        assert_eq!(
            cells(lines[8]),
            ["units 10000001-", "0 units", "0.30/1000", "0.00"]
        );
        assert_eq!(lines[9], "amount: 649.00");
        assert_eq!(lines[10], "total: 649.00 EUR");
        let json: serde_json::Value = serde_json::from_str(&printed(&invoice, true)).unwrap();
        assert_eq!(json["total_minor"], 64_900);
        assert_eq!(json["segments"][0]["tiers"][1]["amount"], "600.00");
    }
}
