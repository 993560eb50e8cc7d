// A key's page: what it is (scopes, allowlist, limits, quota, expiry, last used, what
// it replaced), its usage chart and audit history; rotate it with a grace period, or
// revoke it after a confirmation (with the revocation receipt when keysync gives one).

import * as api from "./api.js";
import { facts, field, h, notAvailable, show } from "./elements.js";
import { count, countOf, rateLimit, time } from "./format.js";
import { onSave, secretOnce } from "./key_forms.js";
import { auditSection, loadUsage, quotaBar } from "./org.js";

export async function keyPage({ main, rights, navigate }, keyId) {
  const key = await api.get(`/v1/keys/${keyId}`);
  const org = await api.get(`/v1/orgs/${key.org_id}`);
  const { replaced, successor } = await rotations(key);
  const actions = h("div", { class: "actions" });
  const usage = h("section", { "aria-labelledby": "key-usage" }, h("h2", { id: "key-usage", text: "Usage" }));
  const audit = h("section", { "aria-labelledby": "key-audit" }, h("h2", { id: "key-audit", text: "Audit history" }));
  const list = (values) => (values.length ? values.join(", ") : "none");
  // The receipt of a revocation made on this page, shown above the rest.
  const receipt = sessionStorage.getItem(`keysync.console.receipt.${key.key_id}`);
  show(
    main,
    `Key ${key.name}`,
    receipt ? h("p", { class: "notice", role: "status", text: receipt }) : null,
    facts([
      ["Organization", h("a", { href: `#/orgs/${org.org_id}`, text: org.name })],
      ["Id", h("code", { text: key.key_id })],
      ["Prefix", h("code", { text: key.prefix })],
      ["Status", h("span", { class: `status status-${key.status}`, text: key.status })],
      ["Created", time(key.created_at)],
      ["Last used", key.last_used_at === undefined ? notAvailable("this keysync does not record it") : time(key.last_used_at)],
      ["Expires", key.expires_at ? time(key.expires_at) : "never"],
      ["Revoked", key.revoked_at ? time(key.revoked_at) : "no"],
      ["Leak reported", key.leaked_at ? time(key.leaked_at) : "no"],
      ["Scopes", list(key.scopes)],
      ["Allowed networks", key.allowed_networks.length ? key.allowed_networks.join(", ") : "anywhere"],
      ["Rate limit", rateLimit(key.rate_limit)],
      ["Monthly quota", quotaBar(key.quota, "key-quota")],
      ["Replaced", replaced ? h("a", { href: `#/keys/${replaced}`, text: replaced }) : "no key (not a rotation)"],
      ["Replaced by", successor ? h("a", { href: `#/keys/${successor}`, text: successor }) : "no key"],
      ["Metadata", key.metadata === undefined ? notAvailable() : key.metadata ? h("code", { text: JSON.stringify(key.metadata) }) : "none"],
    ]),
    usage,
    actions,
    audit,
  );
  if (!rights.read_only && key.status !== "revoked") {
    actions.append(h("h2", { id: "key-actions", text: "Change" }), rotateForm(key, navigate), revokeForm(key));
  }
  await Promise.all([loadUsage(usage, key.org_id, keyId), auditSection(audit, { org_id: key.org_id, object_id: keyId })]);
}

// The keys this one replaced and was replaced by: from the `key.rotated` records of its
// organization's audit trail (the API has no field for them), the latest 100.
async function rotations(key) {
  try {
    const page = await api.get(`/v1/audit${api.query({ org_id: key.org_id, action: "key.rotated", limit: 100 })}`);
    const replaced = page.items.find((record) => record.new_value && record.new_value.new_key_id === key.key_id);
    const successor = page.items.find((record) => record.object_id === key.key_id && record.new_value);
    return { replaced: replaced ? replaced.object_id : null, successor: successor ? successor.new_value.new_key_id : null };
  } catch {
    return { replaced: null, successor: null };
  }
}

function rotateForm(key, navigate) {
  const grace = h("input", { type: "text", name: "grace", value: "24h", autocomplete: "off" });
  const expires = h("input", { type: "text", name: "expires_in", autocomplete: "off" });
  const status = h("div", { class: "form-status" });
  const result = h("div");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "rotate-title" },
    h("h3", { id: "rotate-title", text: "Rotate" }),
    field("Grace period", grace, "How long the old key keeps working: 24h, 30m, or 0s to end it at once."),
    field("New key expires in", expires, "Such as 90d; empty: never."),
    h("button", { type: "submit", text: "Rotate key" }),
    status,
  );
  onSave(form, status, async () => {
    const body = { grace: grace.value.trim() || null };
    if (expires.value.trim()) {
      body.expires_in = expires.value.trim();
    }
    const rotated = await api.change("POST", `/v1/keys/${key.key_id}/rotate`, body, { "Idempotency-Key": api.idempotencyKey() });
    form.hidden = true;
    result.replaceChildren(
      secretOnce("New key (rotation)", rotated),
      h("p", { text: `The old key stops working at ${time(rotated.old_key_expires_at)}.` }),
      h("button", { type: "button", text: "Open the new key", onclick: () => navigate(`#/keys/${rotated.key_id}`) }),
    );
  });
  return h("div", {}, result, form);
}

function revokeForm(key) {
  const status = h("div", { class: "form-status" });
  const confirmButton = h("button", { type: "submit", class: "danger", text: "Revoke" });
  const cancel = h("button", { type: "button", text: "Cancel" });
  const dialog = h(
    "dialog",
    { "aria-labelledby": "revoke-title" },
    h(
      "form",
      { method: "dialog" },
      h("h3", { id: "revoke-title", text: `Revoke ${key.name}?` }),
      h("p", { text: `Every gateway refuses ${key.prefix}… within seconds. This cannot be undone.` }),
      h("div", { class: "buttons" }, cancel, confirmButton),
      status,
    ),
  );
  cancel.addEventListener("click", () => dialog.close());
  const form = dialog.querySelector("form");
  onSave(form, status, async () => {
    const revoked = await api.change("POST", `/v1/keys/${key.key_id}/revoke${api.query({ wait: "10s" })}`).catch((error) => {
      // A keysync without revocation receipts refuses the parameter: revoke without it.
      if (error.status === 400 && /wait/.test(error.message)) {
        return api.change("POST", `/v1/keys/${key.key_id}/revoke`);
      }
      throw error;
    });
    dialog.close();
    sessionStorage.setItem(`keysync.console.receipt.${key.key_id}`, receiptText(revoked.receipt));
    // The page is the same address: show it again, revoked.
    window.dispatchEvent(new HashChangeEvent("hashchange"));
  });
  const open = h("button", { type: "button", class: "danger", text: "Revoke key…", onclick: () => dialog.showModal() });
  return h("div", { class: "card" }, h("h3", { text: "Revoke" }), open, dialog);
}

function receiptText(receipt) {
  if (!receipt) {
    return "Revoked. (This keysync gives no revocation receipt.)";
  }
  const missing = receipt.missing && receipt.missing.length ? ` Not yet confirmed: ${receipt.missing.map((gateway) => gateway.host || gateway.instance_id).join(", ")}.` : "";
  return `Revoked on ${count(receipt.confirmed)} of ${countOf(receipt.gateways, "gateway", "gateways")} in ${count(receipt.elapsed_ms)} ms.${missing}`;
}

