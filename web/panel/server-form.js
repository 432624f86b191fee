// The form that adds a server, or edits one: its header values are never shown, only
// their names; a value left masked is kept as it was.
//
// This file has no side effects: ComfyUI imports every .js file under web/.

import { button, h, submitButton } from "./dom.js";

const MASK = "********";

function parseHeaders(text) {
  const headers = {};
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const at = line.indexOf(":");
    if (at < 1) throw new Error(`header line "${line.trim()}": write it as Name: value`);
    headers[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return headers;
}

/**
 * The form for a new server (name null) or for the named one. Once saved, saved(name)
 * runs with the name it was saved under.
 */
export function serverForm(ctx, name, saved) {
  const { state, attempt, call, say, render, forget } = ctx;
  const existing = name ? state.config.servers[name] : null;
  const prefix = `server:${name ?? ""}:`;
  const field = (key, attributes, tag) => ctx.field(prefix + key, attributes, tag);
  const headerText = existing
    ? Object.keys(existing.headers || {}).map((k) => `${k}: ${MASK}`).join("\n")
    : "";
  const fields = {
    name: field("name", { name: "name", value: name || "", required: true, autocomplete: "off" }),
    url: field("url", {
      name: "url", value: existing ? existing.url : "http://", type: "url", required: true,
    }),
    max_in_flight: field("max", {
      name: "max_in_flight", type: "number", min: 1, value: existing ? existing.max_in_flight : 1,
    }),
    weight: field("weight", {
      name: "weight", type: "number", min: 0.01, step: "any", value: existing ? existing.weight : 1,
    }),
    headers: field(
      "headers",
      { name: "headers", rows: 2, placeholder: "Authorization: Bearer …", value: headerText },
      "textarea",
    ),
  };
  const submit = async (event) => {
    event.preventDefault();
    let headers;
    try {
      headers = parseHeaders(fields.headers.value);
    } catch (error) {
      say("error", error.message);
      return;
    }
    const body = {
      name: fields.name.value.trim(),
      url: fields.url.value.trim(),
      max_in_flight: Number(fields.max_in_flight.value),
      weight: Number(fields.weight.value),
      headers,
    };
    const answer = await attempt(() =>
      name
        ? call("PUT", `/dispatch/servers/${encodeURIComponent(name)}`, body)
        : call("POST", "/dispatch/servers", body),
    );
    if (answer) {
      state.editing = null;
      forget(prefix);
      say("ok", name ? `Saved ${body.name}` : `Added ${body.name}`);
      await saved(body.name);
    }
  };
  const cancel = () => {
    state.editing = null;
    forget(prefix);
    render();
  };
  const label = (text, input) => h("label", { className: "dp-field" }, h("span", {}, text), input);
  return h(
    "form",
    {
      className: "dp-form",
      onsubmit: submit,
      "aria-label": name ? `Edit server ${name}` : "Add a server",
    },
    label("Name", fields.name),
    label("URL", fields.url),
    h(
      "div",
      { className: "dp-row" },
      label("Jobs at once", fields.max_in_flight),
      label("Weight", fields.weight),
    ),
    label("Headers (one per line; values stay hidden)", fields.headers),
    h(
      "div",
      { className: "dp-actions" },
      submitButton(name ? "Save" : "Add server", "primary"),
      button("Cancel", cancel),
    ),
  );
}
