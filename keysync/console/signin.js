// Sign-in: an admin token (`keysync admin-tokens create`), checked against the API.
// A wrong one is refused in the API's words.

import { ApiError } from "./api.js";
import { errorBox, field, h, show } from "./elements.js";

export function signInPage({ main, signedIn, message }) {
  const input = h("input", { type: "password", name: "token", autocomplete: "off", required: true, spellcheck: "false" });
  const status = h("div", { class: "form-status" });
  const button = h("button", { type: "submit", text: "Sign in" });
  const form = h(
    "form",
    { class: "card signin", "aria-label": "Sign in" },
    field("Admin token", input, "From `keysync admin-tokens create`; kept in this tab only, forgotten when it closes or you sign out."),
    button,
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    status.replaceChildren(h("p", { class: "muted", text: "Checking the token…" }));
    try {
      await signedIn(input.value.trim());
    } catch (error) {
      sessionStorage.clear();
      status.replaceChildren(errorBox(error instanceof ApiError ? error : new Error(String(error))));
      input.focus();
    } finally {
      button.disabled = false;
    }
  });
  show(main, "Sign in", message ? h("p", { class: "notice", role: "status", text: message }) : null, form);
  input.focus();
}
