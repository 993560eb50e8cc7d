// Building the page's elements from code: text is always set as text (never parsed as
// HTML), handlers are attached with addEventListener (the Content-Security-Policy
// forbids inline ones).

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) {
      continue;
    }
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "text") {
      element.textContent = value;
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) {
      continue;
    }
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

const SVG = "http://www.w3.org/2000/svg";

export function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null) {
      element.setAttribute(name, String(value));
    }
  }
  append(element, children);
  return element;
}

// A labelled form field: the label names the control (for= its id).
let fieldCount = 0;
export function field(label, control, hint) {
  fieldCount += 1;
  const id = control.id || `field-${fieldCount}`;
  control.id = id;
  const parts = [h("label", { for: id, text: label }), control];
  if (hint) {
    const hintId = `${id}-hint`;
    control.setAttribute("aria-describedby", hintId);
    parts.push(h("span", { class: "hint", id: hintId, text: hint }));
  }
  return h("div", { class: "field" }, ...parts);
}

// A definition list of (term, value) pairs.
export function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.map(([term, value]) => [h("dt", { text: term }), h("dd", {}, value)]));
}

// An error in the API's words, announced to screen readers.
export function errorBox(error) {
  return h("p", { class: "error", role: "alert", text: error.message || String(error) });
}

export function notAvailable(what) {
  return h("span", { class: "muted", text: `not available${what ? ` (${what})` : ""}` });
}

// A table with a caption and header cells.
export function table(caption, headers, rows, empty = "None.") {
  if (rows.length === 0) {
    return h("p", { class: "muted", text: empty });
  }
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("caption", { text: caption }),
      h("thead", {}, h("tr", {}, headers.map((header) => h("th", { scope: "col", text: header })))),
      h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell) => h("td", {}, cell))))),
    ),
  );
}

// Replaces the main area's content and moves focus to its heading, so keyboard and
// screen-reader users land on the new page.
export function show(main, title, ...children) {
  const heading = h("h1", { tabindex: "-1", text: title });
  main.replaceChildren(heading, ...children.filter((child) => child !== null && child !== undefined));
  document.title = `${title} · keysync console`;
  heading.focus();
}
