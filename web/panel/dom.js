// The panel's DOM helpers: elements built from text only, sections, and inputs whose typed
// values survive every redraw. Everything shown is set as text, never as HTML: names and
// messages come from users and peers.
//
// This file has no side effects: ComfyUI imports every .js file under web/.

/** Build an element; strings become text nodes, never markup. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else if (key === "className") element.className = value;
    else if (key === "value") element.value = value;
    else element.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export function icon(name) {
  return h("i", { className: `pi ${name}`, "aria-hidden": "true" });
}

export function button(label, onclick, { iconName, title, kind } = {}) {
  return h(
    "button",
    { type: "button", className: `dp-button${kind ? ` dp-${kind}` : ""}`, title, onclick },
    iconName ? icon(iconName) : null,
    label,
  );
}

export function submitButton(label, kind) {
  return h("button", { type: "submit", className: `dp-button${kind ? ` dp-${kind}` : ""}` }, label);
}

/** A titled part of the panel: its header with tools, then its content. */
export function section(title, tools, ...content) {
  const id = `dp-${title.toLowerCase()}`;
  return h(
    "section",
    { className: "dp-section", "aria-labelledby": id },
    h(
      "header",
      { className: "dp-header" },
      h("h3", { id }, title),
      h("div", { className: "dp-tools" }, tools),
    ),
    content,
  );
}

/** A list of rows, or a line saying there is none. */
export function listOr(items, row, empty, className = "dp-list") {
  if (items.length) return h("ul", { className }, items.map(row));
  return empty ? h("p", { className: "dp-empty" }, empty) : null;
}

/**
 * What the user typed, by field key. field() makes an input (or textarea) that shows its
 * draft, so a redraw (every event causes one) keeps typed values; forget(prefix) drops the
 * drafts of a form once it is saved or cancelled. The data-key lets the panel give focus
 * back to the same field after a redraw.
 */
export function createDrafts() {
  const drafts = new Map();
  function field(key, attributes = {}, tag = "input") {
    const element = h(tag, { ...attributes, value: undefined, "data-key": key });
    element.value = drafts.has(key) ? drafts.get(key) : (attributes.value ?? "");
    element.addEventListener("input", () => drafts.set(key, element.value));
    return element;
  }
  function forget(prefix) {
    for (const key of [...drafts.keys()]) if (key.startsWith(prefix)) drafts.delete(key);
  }
  return { field, forget };
}

/** "a, b ,, c" → ["a", "b", "c"] */
export function splitList(text, separator = ",") {
  return text.split(separator).map((s) => s.trim()).filter(Boolean);
}

export function bytes(value) {
  if (typeof value !== "number") return "?";
  return `${(value / 1024 ** 3).toFixed(1)} GB`;
}

export function seconds(value) {
  if (typeof value !== "number") return "";
  return value < 10 ? `${value.toFixed(1)} s` : `${Math.round(value)} s`;
}
