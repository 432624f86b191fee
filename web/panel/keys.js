// The API keys section, on the standalone gateway only (inside ComfyUI there are none and
// the section is not drawn): each key's name and rate, revoke, and a form that makes one.
// A new key is shown once, here, as the dispatcher answered it: it keeps only its hash.
//
// This file has no side effects: ComfyUI imports every .js file under web/.

import { button, h, listOr, section, submitButton } from "./dom.js";

export async function loadKeys(ctx) {
  try {
    ctx.state.keys = await ctx.call("GET", "/dispatch/keys");
  } catch {
    ctx.state.keys = null; // not the gateway, or not allowed: no section
  }
  ctx.render();
}

async function revoke(ctx, name) {
  const question = `Revoke key ${name}? Clients using it are refused at once.`;
  if (!(await ctx.host.confirm(question))) return;
  const path = `/dispatch/keys/${encodeURIComponent(name)}`;
  if (await ctx.attempt(() => ctx.call("DELETE", path), `Revoked key ${name}`)) loadKeys(ctx);
}

function keyRow(ctx, key) {
  const rate = key.rate ? `${key.rate} requests a minute` : "no rate limit";
  return h(
    "li",
    { className: "dp-key", "data-key-name": key.name },
    h(
      "div",
      { className: "dp-line" },
      h("strong", {}, key.name),
      h("span", { className: "dp-muted" }, rate),
    ),
    h(
      "div",
      { className: "dp-actions" },
      button("Revoke", () => revoke(ctx, key.name), { iconName: "pi-trash", kind: "danger" }),
    ),
  );
}

function createForm(ctx) {
  const name = ctx.field("new-key:name", {
    placeholder: "key name, e.g. my-app",
    "aria-label": "New key name",
  });
  const rate = ctx.field("new-key:rate", {
    placeholder: "requests a minute (empty: no limit)",
    "aria-label": "New key rate",
  });
  const create = async (event) => {
    event.preventDefault();
    const body = { name: name.value.trim(), rate: rate.value.trim() || null };
    const made = await ctx.attempt(() => ctx.call("POST", "/dispatch/keys", body));
    if (!made) return;
    ctx.state.newKey = made;
    ctx.forget("new-key:");
    loadKeys(ctx);
  };
  return h(
    "form",
    { className: "dp-form dp-inline", onsubmit: create, "aria-label": "Create a key" },
    name,
    rate,
    submitButton("Create key"),
  );
}

function shownOnce(ctx) {
  const made = ctx.state.newKey;
  if (!made) return null;
  return h(
    "div",
    { className: "dp-banner", role: "status" },
    h("p", {}, `Key ${made.name}: copy it now, it is not shown again.`),
    h("code", { className: "dp-secret" }, made.key),
    button("Done", () => {
      ctx.state.newKey = null;
      ctx.render();
    }),
  );
}

export function keysSection(ctx) {
  if (!Array.isArray(ctx.state.keys)) return null;
  return section(
    "API keys",
    [],
    shownOnce(ctx),
    listOr(ctx.state.keys, (key) => keyRow(ctx, key), "No key yet: clients use the token."),
    createForm(ctx),
  );
}
