// The overview: the fleet's requests by hour and outcome over 24 hours, 7 or 30 days
// (GET /v1/usage), and the organizations with the most traffic and refusals.

import * as api from "./api.js";
import { usageChart } from "./chart.js";
import { errorBox, h, show, table } from "./elements.js";
import { count } from "./format.js";

const RANGES = [
  ["24h", "24 hours"],
  ["7d", "7 days"],
  ["30d", "30 days"],
];

let chosen = "24h";

export async function overviewPage(context) {
  const { main } = context;
  const body = h("div", { class: "overview", "aria-live": "polite" });
  const picker = h(
    "fieldset",
    { class: "ranges" },
    h("legend", { text: "Range" }),
    RANGES.map(([value, label]) => {
      const input = h("input", { type: "radio", name: "range", value, id: `range-${value}`, checked: value === chosen });
      input.addEventListener("change", () => {
        chosen = value;
        load();
      });
      return h("span", { class: "range" }, input, h("label", { for: input.id, text: label }));
    }),
  );
  show(main, "Overview", picker, body);

  async function load() {
    body.replaceChildren(h("p", { class: "muted", text: "Loading…" }));
    let usage;
    try {
      usage = await api.get(`/v1/usage${api.query({ since: chosen })}`);
    } catch (error) {
      body.replaceChildren(errorBox(error));
      return;
    }
    const orgLink = (org) => h("a", { href: `#/orgs/${org.org_id}`, text: org.name || org.org_id });
    body.replaceChildren(
      usageChart(`Requests over the last ${RANGES.find(([value]) => value === chosen)[1]}`, usage.series, usage.from, usage.to),
      h(
        "div",
        { class: "columns" },
        h(
          "section",
          { "aria-labelledby": "top-traffic" },
          h("h2", { id: "top-traffic", text: "Most traffic" }),
          table("Organizations with the most requests", ["Organization", "Requests", "Refused"], usage.top_by_requests.map((org) => [orgLink(org), count(org.requests), count(org.refused)]), "No traffic in this range."),
        ),
        h(
          "section",
          { "aria-labelledby": "top-refusals" },
          h("h2", { id: "top-refusals", text: "Most refusals" }),
          table("Organizations with the most refused requests", ["Organization", "Refused", "Requests"], usage.top_by_refusals.map((org) => [orgLink(org), count(org.refused), count(org.requests)]), "Nothing refused in this range."),
        ),
      ),
    );
  }
  await load();
}
