// An organization's page: its rate limit, its monthly quota (use against it, and when
// it resets), its usage chart, its keys (and a form to make one), its audit trail.

import * as api from "./api.js";
import { usageChart } from "./chart.js";
import { errorBox, facts, field, h, show, table } from "./elements.js";
import { count, rateLimit, time } from "./format.js";
import { onSave, secretOnce } from "./key_forms.js";
import { auditTable } from "./audit.js";

export async function orgPage({ main, rights }, orgId) {
  const org = await api.get(`/v1/orgs/${orgId}`);
  const usage = h("section", { "aria-labelledby": "org-usage" }, h("h2", { id: "org-usage", text: "Usage" }));
  const keys = h("section", { "aria-labelledby": "org-keys" }, h("h2", { id: "org-keys", text: "Keys" }));
  const audit = h("section", { "aria-labelledby": "org-audit" }, h("h2", { id: "org-audit", text: "Audit trail" }));
  show(
    main,
    org.name,
    facts([
      ["Id", h("code", { text: org.org_id })],
      ["Created", time(org.created_at)],
      ["External id", org.external_id === undefined ? h("span", { class: "muted", text: "not available" }) : org.external_id || "none"],
      ["Rate limit", rateLimit(org.rate_limit)],
      ["Monthly quota", quotaBar(org.quota, "org-quota")],
    ]),
    usage,
    keys,
    audit,
  );
  await Promise.all([
    loadUsage(usage, orgId, null),
    loadKeys(keys, org, rights),
    auditSection(audit, { org_id: orgId }),
  ]);
}

// Use of a monthly quota against it, and the day it resets.
export function quotaBar(quota, id) {
  if (!quota) {
    return "none";
  }
  const meter = h("meter", { id, min: 0, max: quota.monthly, value: Math.min(quota.used, quota.monthly), high: quota.monthly * 0.9 });
  return h(
    "span",
    { class: "quota" },
    h("label", { for: id, text: `${count(quota.used)} of ${count(quota.monthly)} used` }),
    meter,
    h("span", { class: "muted", text: ` resets ${time(quota.resets_at)} (day ${quota.reset_day} of each month)` }),
  );
}

// The usage chart of an organization, or of one of its keys, by hour over a range the
// user picks.
export async function loadUsage(section, orgId, keyId) {
  const select = h(
    "select",
    { name: "usage-range" },
    h("option", { value: "24h", text: "24 hours" }),
    h("option", { value: "7d", text: "7 days" }),
    h("option", { value: "30d", text: "30 days" }),
  );
  const picture = h("div", { "aria-live": "polite" });
  section.append(field("Range", select), picture);
  async function load() {
    picture.replaceChildren(h("p", { class: "muted", text: "Loading…" }));
    try {
      const report = await api.get(`/v1/orgs/${orgId}/usage${api.query({ key_id: keyId, by: "hour", since: select.value })}`);
      const byOutcome = await api.get(`/v1/orgs/${orgId}/usage${api.query({ key_id: keyId, by: "status", since: select.value })}`);
      const outcomes = byOutcome.rows.map((row) => `${row.outcome} ${count(row.requests)}`).join(", ");
      picture.replaceChildren(
        usageChart(keyId ? "This key's requests" : "This organization's requests", report.rows, report.from, report.to),
        h("p", { class: "muted", text: outcomes ? `By outcome: ${outcomes}.` : "" }),
      );
    } catch (error) {
      picture.replaceChildren(errorBox(error));
    }
  }
  select.addEventListener("change", load);
  await load();
}

async function loadKeys(section, org, rights) {
  const list = h("div");
  section.append(list);
  if (!rights.read_only) {
    section.append(createKeyForm(org, () => refresh()));
  }
  async function refresh() {
    try {
      const page = await api.get(`/v1/orgs/${org.org_id}/keys${api.query({ limit: 100 })}`);
      list.replaceChildren(
        table(
          `Keys of ${org.name}`,
          ["Name", "Prefix", "Status", "Last used", "Expires", "Created"],
          page.items.map((key) => [
            h("a", { href: `#/keys/${key.key_id}`, text: key.name }),
            h("code", { text: key.prefix }),
            h("span", { class: `status status-${key.status}`, text: key.status }),
            key.last_used_at === undefined ? h("span", { class: "muted", text: "not available" }) : time(key.last_used_at),
            key.expires_at ? time(key.expires_at) : "never",
            time(key.created_at),
          ]),
          "No keys yet.",
        ),
        h("p", { class: "muted", text: page.next_cursor ? "The first 100 keys are shown." : "" }),
      );
    } catch (error) {
      list.replaceChildren(errorBox(error));
    }
  }
  await refresh();
}

function createKeyForm(org, created) {
  const name = h("input", { type: "text", name: "name", required: true, maxlength: 200, autocomplete: "off" });
  const env = h("select", { name: "env" }, h("option", { value: "live", text: "live (sk_live_)" }), h("option", { value: "test", text: "test (sk_test_)" }));
  const expires = h("input", { type: "text", name: "expires_in", placeholder: "90d", autocomplete: "off" });
  const scopes = h("input", { type: "text", name: "scopes", placeholder: "orders:read billing:write", autocomplete: "off" });
  const status = h("div", { class: "form-status" });
  const result = h("div");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "create-key-title" },
    h("h3", { id: "create-key-title", text: "Create a key" }),
    field("Name", name),
    field("Environment", env),
    field("Expires in", expires, "A duration such as 90d; empty: never."),
    field("Scopes", scopes, "Separated by spaces; empty: none."),
    h("button", { type: "submit", text: "Create key" }),
    status,
  );
  onSave(form, status, async () => {
    const body = { org_id: org.org_id, name: name.value.trim(), env: env.value };
    if (expires.value.trim()) {
      body.expires_in = expires.value.trim();
    }
    const listed = scopes.value.split(/[\s,]+/).filter(Boolean);
    if (listed.length) {
      body.scopes = listed;
    }
    const key = await api.change("POST", "/v1/keys", body, { "Idempotency-Key": api.idempotencyKey() });
    form.reset();
    result.replaceChildren(secretOnce("New key", key));
    await created();
  });
  return h("div", {}, result, form);
}

// The latest records of the audit trail that `filter` selects, and a link to the rest.
export async function auditSection(section, filter) {
  try {
    const page = await api.get(`/v1/audit${api.query({ ...filter, limit: 20 })}`);
    section.append(auditTable(page.items), h("p", {}, h("a", { href: `#/audit?${new URLSearchParams(filter)}`, text: "The whole audit trail" })));
  } catch (error) {
    section.append(errorBox(error));
  }
}
