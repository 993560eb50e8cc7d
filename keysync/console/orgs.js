// Organizations: a page at a time (GET /v1/orgs, oldest first), searched by name or id
// (`?search=`, by keysync, over every organization).

import * as api from "./api.js";
import { errorBox, field, h, show, table } from "./elements.js";
import { rateLimit, time } from "./format.js";

const PAGE = 50;
const TYPING_PAUSE_MS = 300;

export async function orgsPage({ main }) {
  const search = h("input", { type: "search", name: "search", autocomplete: "off" });
  const list = h("div", { "aria-live": "polite" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages of organizations" });
  const form = h("form", { class: "toolbar", role: "search" }, field("Search by name or id", search));
  let cursors = [null];
  let typing = null;
  show(main, "Organizations", form, list, pager);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    restart();
  });
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(restart, TYPING_PAUSE_MS);
  });

  function restart() {
    cursors = [null];
    load(0);
  }

  async function load(index) {
    list.replaceChildren(h("p", { class: "muted", text: "Loading…" }));
    const text = search.value.trim();
    let page;
    try {
      page = await api.get(`/v1/orgs${api.query({ limit: PAGE, cursor: cursors[index], search: text })}`);
    } catch (error) {
      list.replaceChildren(errorBox(error));
      return;
    }
    if (text !== search.value.trim()) {
      return; // typed on meanwhile: the next answer is the one to show
    }
    cursors[index + 1] = page.next_cursor || null;
    list.replaceChildren(
      table(
        "Organizations",
        ["Name", "Rate limit", "Monthly quota", "Created"],
        page.items.map((org) => [
          h("a", { href: `#/orgs/${org.org_id}`, text: org.name }),
          rateLimit(org.rate_limit),
          org.quota ? `${org.quota.used} of ${org.quota.monthly}` : "none",
          time(org.created_at),
        ]),
        text ? `No organization matches “${text}”.` : "No organizations yet.",
      ),
    );
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
