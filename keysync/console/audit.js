// The audit trail, newest first, filtered by organization, key (any object), action and
// actor (GET /v1/audit), a page at a time.

import * as api from "./api.js";
import { errorBox, field, h, show, table } from "./elements.js";
import { time } from "./format.js";

const ACTIONS = [
  "org.created", "org.limit_set", "org.quota_set", "org.plan_set",
  "key.created", "key.rotated", "key.revoked", "key.limit_set", "key.quota_set",
  "key.scopes_set", "key.allowlist_set", "key.leak_reported",
  "admin_token.created", "admin_token.revoked", "plan.created", "plan.archived",
  "org.updated", "key.metadata_set", "org.keys_imported", "webhook.created", "webhook.deleted",
];

function objectLink(record) {
  if (record.object_type === "key") {
    return h("a", { href: `#/keys/${record.object_id}`, text: `key ${record.object_id.slice(0, 8)}` });
  }
  if (record.object_type === "org") {
    return h("a", { href: `#/orgs/${record.object_id}`, text: `org ${record.object_id.slice(0, 8)}` });
  }
  return `${record.object_type} ${record.object_id.slice(0, 8)}`;
}

function change(record) {
  const text = (value) => (value === null || value === undefined ? "–" : JSON.stringify(value));
  return h("details", {}, h("summary", { text: "before → after" }), h("code", { class: "change", text: `${text(record.old_value)} → ${text(record.new_value)}` }));
}

export function auditTable(items) {
  return table(
    "Audit records, newest first",
    ["When", "Action", "Object", "By", "Change"],
    items.map((record) => [
      time(record.at),
      record.action,
      objectLink(record),
      record.actor_token_id ? `admin token ${record.actor_token_id.slice(0, 8)}` : record.actor,
      change(record),
    ]),
    "No records.",
  );
}

export async function auditPage({ main, rights }, search) {
  const initial = new URLSearchParams(search || "");
  const org = h("input", { type: "text", name: "org_id", value: initial.get("org_id") || rights.org_id || "", autocomplete: "off", placeholder: "organization id" });
  const object = h("input", { type: "text", name: "object_id", value: initial.get("object_id") || "", autocomplete: "off", placeholder: "key id" });
  const action = h("select", { name: "action" }, h("option", { value: "", text: "any" }), ACTIONS.map((name) => h("option", { value: name, text: name, selected: name === initial.get("action") })));
  const actor = h("input", { type: "text", name: "actor", value: initial.get("actor") || "", autocomplete: "off", placeholder: "cli, admin_token or a token id" });
  const results = h("div", { "aria-live": "polite" });
  const more = h("div", { class: "pager" });
  const form = h(
    "form",
    { class: "filters", "aria-label": "Filter the audit trail" },
    field("Organization", org),
    field("Key or object", object),
    field("Action", action),
    field("Actor", actor),
    h("button", { type: "submit", text: "Filter" }),
  );
  show(main, "Audit trail", form, results, more);

  async function load(cursor) {
    const filter = { org_id: org.value.trim(), object_id: object.value.trim(), action: action.value, actor: actor.value.trim() };
    if (!cursor) {
      results.replaceChildren(h("p", { class: "muted", text: "Loading…" }));
    }
    let page;
    try {
      page = await api.get(`/v1/audit${api.query({ ...filter, limit: 50, cursor })}`);
    } catch (error) {
      results.replaceChildren(errorBox(error));
      more.replaceChildren();
      return;
    }
    if (cursor) {
      results.append(auditTable(page.items));
    } else {
      results.replaceChildren(auditTable(page.items));
    }
    more.replaceChildren(page.next_cursor ? h("button", { type: "button", text: "Older records", onclick: () => load(page.next_cursor) }) : h("span", { class: "muted", text: "The end of the trail." }));
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load(null);
  });
  await load(null);
}
