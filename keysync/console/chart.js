// Requests by hour as stacked bars, one colour an outcome, drawn as SVG by the console
// itself (no chart library to bundle or keep up to date). Each bar carries its hour and
// total as data attributes, and the same numbers are in a table below the chart, for
// screen readers and for the browser tests.

import { h, svg } from "./elements.js";
import { OUTCOMES, count, outcomeName, time } from "./format.js";

const HOUR_MS = 3600 * 1000;
const BAR = 4;
const HEIGHT = 120;

// `points`: [{period, outcome, requests}] (or usage rows: {period, outcome?, requests});
// `from`, `to`: the range's whole hours (RFC 3339).
export function usageChart(label, points, from, to) {
  const start = Date.parse(from);
  const hours = Math.max(1, Math.round((Date.parse(to) - start) / HOUR_MS));
  const buckets = new Map();
  for (const point of points) {
    const index = Math.floor((Date.parse(point.period) - start) / HOUR_MS);
    if (index < 0 || index >= hours) {
      continue;
    }
    const bucket = buckets.get(index) || { period: point.period, total: 0, outcomes: new Map() };
    const outcome = point.outcome || "all";
    bucket.outcomes.set(outcome, (bucket.outcomes.get(outcome) || 0) + point.requests);
    bucket.total += point.requests;
    buckets.set(index, bucket);
  }
  const highest = Math.max(1, ...Array.from(buckets.values(), (bucket) => bucket.total));
  const total = Array.from(buckets.values()).reduce((sum, bucket) => sum + bucket.total, 0);
  const bars = [];
  for (const [index, bucket] of [...buckets.entries()].sort((a, b) => a[0] - b[0])) {
    let y = HEIGHT;
    const parts = [];
    const order = [...OUTCOMES.map(([code]) => code), "all"];
    for (const outcome of order) {
      const requests = bucket.outcomes.get(outcome);
      if (!requests) {
        continue;
      }
      const height = Math.max(0.5, (requests / highest) * HEIGHT);
      y -= height;
      parts.push(svg("rect", { x: index * BAR, y, width: BAR - 0.5, height, class: `o-${outcome}` }));
    }
    const summary = [...bucket.outcomes.entries()].map(([outcome, requests]) => `${outcomeName(outcome)} ${count(requests)}`).join(", ");
    bars.push(
      svg(
        "g",
        { class: "bar", "data-period": bucket.period, "data-total": bucket.total },
        svg("title", {}, `${time(bucket.period)}: ${count(bucket.total)} requests (${summary})`),
        ...parts,
      ),
    );
  }
  const width = hours * BAR;
  const picture = svg(
    "svg",
    {
      class: "chart",
      viewBox: `0 0 ${width} ${HEIGHT}`,
      preserveAspectRatio: "none",
      role: "img",
      "aria-label": `${label}: ${count(total)} requests from ${time(from)} to ${time(to)}, at most ${count(highest)} in an hour`,
    },
    svg("line", { x1: 0, y1: HEIGHT, x2: width, y2: HEIGHT, class: "axis" }),
    ...bars,
  );
  const present = new Set(points.map((point) => point.outcome || "all"));
  const legend = h(
    "ul",
    { class: "legend" },
    [...OUTCOMES.map(([code]) => code), "all"].filter((code) => present.has(code)).map((code) =>
      h("li", {}, h("span", { class: `swatch o-${code}`, "aria-hidden": "true" }), code === "all" ? "requests" : outcomeName(code)),
    ),
  );
  const rows = [...buckets.values()].sort((a, b) => a.period.localeCompare(b.period));
  const details = h(
    "details",
    { class: "chart-table" },
    h("summary", { text: "Show the numbers" }),
    rows.length === 0
      ? h("p", { class: "muted", text: "No requests in this range." })
      : h(
          "table",
          {},
          h("caption", { text: label }),
          h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Hour" }), h("th", { scope: "col", text: "Requests" }), h("th", { scope: "col", text: "By outcome" }))),
          h(
            "tbody",
            {},
            rows.map((bucket) =>
              h(
                "tr",
                { dataset: { period: bucket.period, total: String(bucket.total) } },
                h("td", { text: time(bucket.period) }),
                h("td", { text: count(bucket.total) }),
                h("td", { text: [...bucket.outcomes.entries()].map(([outcome, requests]) => `${outcome === "all" ? "requests" : outcomeName(outcome)}: ${count(requests)}`).join("; ") }),
              ),
            ),
          ),
        ),
  );
  return h(
    "figure",
    { class: "usage", dataset: { total: String(total) } },
    h("figcaption", {}, `${label}: `, h("strong", { text: `${count(total)} requests` })),
    h("div", { class: "chart-frame" }, picture, h("div", { class: "chart-axis" }, h("span", { text: time(from) }), h("span", { text: time(to) }))),
    legend,
    details,
  );
}
