// The console's shell: the sign-in state, the navigation and which page the address
// (`#/orgs/<id>`) shows. Every page reads and writes through the HTTP API (api.js).

import * as api from "./api.js";
import { errorBox, show } from "./elements.js";
import { auditPage } from "./audit.js";
import { gatewaysPage } from "./gateways.js";
import { keyPage } from "./key.js";
import { orgPage } from "./org.js";
import { orgsPage } from "./orgs.js";
import { overviewPage } from "./overview.js";
import { signInPage } from "./signin.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const signOutButton = document.getElementById("signout");
const connection = document.getElementById("connection");

// What the token may do (GET /v1/whoami), once signed in.
let rights = null;

const routes = [
  [/^#\/overview$/, (context) => overviewPage(context)],
  [/^#\/orgs$/, (context) => orgsPage(context)],
  [/^#\/orgs\/([0-9a-f-]{36})$/, (context, id) => orgPage(context, id)],
  [/^#\/keys\/([0-9a-f-]{36})$/, (context, id) => keyPage(context, id)],
  [/^#\/audit(?:\?(.*))?$/, (context, search) => auditPage(context, search)],
  [/^#\/gateways$/, (context) => gatewaysPage(context)],
];

function home() {
  return rights && rights.org_id ? `#/orgs/${rights.org_id}` : "#/overview";
}

function showSignedIn() {
  nav.hidden = false;
  signOutButton.hidden = false;
  who.textContent = rights.read_only ? "read-only token" : "admin token";
  for (const link of nav.querySelectorAll("a")) {
    // A token of one organization has no fleet overview or gateways to see.
    const fleetOnly = link.dataset.section === "overview" || link.dataset.section === "gateways";
    link.hidden = Boolean(rights.org_id) && fleetOnly;
    if (link.dataset.section === "orgs" && rights.org_id) {
      link.href = home();
      link.textContent = "Organization";
    }
  }
}

function showSignedOut() {
  nav.hidden = true;
  signOutButton.hidden = true;
  who.textContent = "";
}

function markCurrent(hash) {
  for (const link of nav.querySelectorAll("a")) {
    const section = link.dataset.section;
    const current = hash.startsWith(`#/${section}`) || (section === "orgs" && hash.startsWith("#/keys"));
    if (current) {
      link.setAttribute("aria-current", "page");
    } else {
      link.removeAttribute("aria-current");
    }
  }
}

async function signedIn(token) {
  api.keepToken(token);
  rights = await api.get("/v1/whoami");
  showSignedIn();
  location.hash = home();
}

function signOut(message) {
  api.forgetToken();
  rights = null;
  showSignedOut();
  if (location.hash !== "#/signin") {
    location.hash = "#/signin";
  }
  route(message);
}

async function route(message) {
  const hash = location.hash || "#/";
  if (!api.token()) {
    showSignedOut();
    signInPage({ main, signedIn, message });
    return;
  }
  if (!rights) {
    try {
      rights = await api.get("/v1/whoami");
    } catch (error) {
      signOut(error.message);
      return;
    }
    showSignedIn();
  }
  markCurrent(hash);
  const context = { main, rights, navigate: (to) => (location.hash = to) };
  for (const [pattern, page] of routes) {
    const match = hash.match(pattern);
    if (match) {
      try {
        await page(context, ...match.slice(1));
      } catch (error) {
        show(main, "Something went wrong", errorBox(error));
      }
      return;
    }
  }
  location.hash = home();
}

api.onConnection((text) => {
  connection.hidden = text === null;
  connection.textContent = text || "";
});
// While signing in, the sign-in form shows the refusal itself.
api.onUnauthorized((error) => {
  if (rights) {
    signOut(error.message);
  }
});
signOutButton.addEventListener("click", () => signOut("Signed out: the token is forgotten in this tab."));
window.addEventListener("hashchange", () => route());
route();
