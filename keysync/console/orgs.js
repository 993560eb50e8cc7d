// Organizations: a page at a time (GET /v1/orgs, oldest first), filtered by name or id.

import * as api from "./api.js";
import { errorBox, field, h, show, table } from "./elements.js";
import { rateLimit, time } from "./format.js";

const PAGE = 50;

export async function orgsPage({ main }) {
  const filter = h("input", { type: "search", name: "filter", autocomplete: "off" });
  const list = h("div", { "aria-live": "polite" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages of organizations" });
  const cursors = [null];
  let items = [];
  show(main, "Organizations", h("form", { class: "toolbar", role: "search" }, field("Search by name or id", filter)), list, pager);
  filter.form.addEventListener("submit", (event) => event.preventDefault());
  filter.addEventListener("input", render);

  function render() {
    const needle = filter.value.trim().toLowerCase();
    const shown = items.filter((org) => !needle || org.name.toLowerCase().includes(needle) || org.org_id.includes(needle));
    list.replaceChildren(
      table(
        "Organizations",
        ["Name", "Rate limit", "Monthly quota", "Created"],
        shown.map((org) => [
          h("a", { href: `#/orgs/${org.org_id}`, text: org.name }),
          rateLimit(org.rate_limit),
          org.quota ? `${org.quota.used} of ${org.quota.monthly}` : "none",
          time(org.created_at),
        ]),
        needle ? "No organization on this page matches." : "No organizations yet.",
      ),
    );
  }

  async function load(index) {
    list.replaceChildren(h("p", { class: "muted", text: "Loading…" }));
    let page;
    try {
      page = await api.get(`/v1/orgs${api.query({ limit: PAGE, cursor: cursors[index] })}`);
    } catch (error) {
      list.replaceChildren(errorBox(error));
      return;
    }
    items = page.items;
    cursors[index + 1] = page.next_cursor || null;
    render();
    const buttons = [];
    if (index > 0) {
      buttons.push(h("button", { type: "button", text: "Previous page", onclick: () => load(index - 1) }));
    }
    if (page.next_cursor) {
      buttons.push(h("button", { type: "button", text: "Next page", onclick: () => load(index + 1) }));
    }
    pager.replaceChildren(h("span", { class: "muted", text: `Page ${index + 1}` }), ...buttons);
  }
  await load(0);
}
