// What the org and key pages share about making keys: the secret shown once (with a
// copy button and a warning), and the form that keeps its values when a save fails.

import { errorBox, h } from "./elements.js";

// The new secret, once: it cannot be shown again.
export function secretOnce(title, created) {
  const code = h("code", { class: "secret", text: created.key, dataset: { keyId: created.key_id } });
  const copied = h("span", { class: "muted", role: "status" });
  const copy = h("button", {
    type: "button",
    text: "Copy",
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(created.key);
        copied.textContent = "Copied.";
      } catch {
        const range = document.createRange();
        range.selectNodeContents(code);
        getSelection().removeAllRanges();
        getSelection().addRange(range);
        copied.textContent = "Selected: copy it with Ctrl+C.";
      }
    },
  });
  return h(
    "section",
    { class: "card secret-once", role: "alert", "aria-label": title },
    h("h2", { text: title }),
    h("p", { class: "warning", text: "Copy this key now: it is shown once and never again. keysync keeps only its hash." }),
    h("p", {}, code, " ", copy, " ", copied),
    h("p", {}, "Key id: ", h("a", { href: `#/keys/${created.key_id}`, text: created.key_id })),
  );
}

// Runs `save` when `form` is submitted: the button is disabled meanwhile, an error is
// shown in the API's words in `status`, and the fields keep what was typed.
export function onSave(form, status, save) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    status.replaceChildren();
    try {
      await save();
    } catch (error) {
      status.replaceChildren(errorBox(error));
    } finally {
      button.disabled = false;
    }
  });
}
