// The Servers section: each server's state, metrics and actions, and its model files when
// asked.
//
// This file has no side effects: ComfyUI imports every .js file under web/.

import { button, bytes, h, listOr, section, seconds } from "./dom.js";
import { serverForm } from "./server-form.js";
import { applyStatus } from "./events.js";

/** online, busy, offline, disabled or unknown: what the dot shows. */
export function serverState(server, status) {
  if (!server.enabled) return "disabled";
  if (!status) return "unknown";
  if (!status.online) return "offline";
  if ((status.queue_depth || 0) > 0 || (status.in_flight || 0) > 0) return "busy";
  return "online";
}

const serverPath = (name) => `/dispatch/servers/${encodeURIComponent(name)}`;

async function testServer(ctx, name) {
  const found = await ctx.attempt(() => ctx.call("POST", `${serverPath(name)}/test`));
  if (!found) return;
  ctx.state.status[name] = found;
  if (found.online) ctx.say("ok", `${name} is online (ComfyUI ${found.comfyui_version})`);
  else ctx.say("error", `${name} is offline: ${found.error}`);
}

/** What the server's last status says: reachability and load, then speed. */
function statusLines(server, status) {
  const metrics = [];
  const speed = [];
  if (!status) return [metrics, speed];
  if (status.online) {
    if (typeof status.latency_ms === "number") metrics.push(`${Math.round(status.latency_ms)} ms`);
    metrics.push(`queue ${status.queue_depth ?? "?"}`);
    metrics.push(`in flight ${status.in_flight}`);
    if (status.vram_total) {
      const used = bytes(status.vram_total - status.vram_free);
      metrics.push(`VRAM ${used} / ${bytes(status.vram_total)}`);
    }
  } else if (status.error && server.enabled) {
    metrics.push(status.error);
  }
  if (typeof status.seconds_per_job === "number") {
    speed.push(`${seconds(status.seconds_per_job)}/job`);
  }
  if (typeof status.calibrated_seconds === "number") {
    speed.push(`calibrated ${seconds(status.calibrated_seconds)}`);
  }
  if (status.loaded_models && status.loaded_models.length) {
    speed.push(`holds ${status.loaded_models.join(", ")}`);
  }
  return [metrics, speed];
}

/** The actions of one server: Test and the switch on the card, the rare ones in a menu. */
function serverActions(ctx, name, server) {
  const { state, attempt, call, say, render, host } = ctx;
  const path = serverPath(name);
  const calibrate = async () => {
    const found = await attempt(() => call("POST", `${path}/calibrate`));
    if (found) say("ok", `${name}: ${seconds(found.calibrated_seconds)} per calibration job`);
  };
  const switchTo = server.enabled ? "disable" : "enable";
  const switchOver = () => attempt(() => call("POST", `${path}/${switchTo}`));
  const edit = () => {
    state.editing = name;
    render();
  };
  const remove = async () => {
    if (await host.confirm(`Remove server ${name}?`)) {
      await attempt(() => call("DELETE", path), `Removed ${name}`);
    }
  };
  const free = () => attempt(() => call("POST", `${path}/free`), `Asked ${name} to free its VRAM`);
  const menu = actionMenu(state, name, [
    button("Free VRAM", free, { iconName: "pi-eraser" }),
    button(state.showModels.has(name) ? "Hide models" : "Models", () => toggleModels(ctx, name), {
      iconName: "pi-box",
    }),
    button("Calibrate", calibrate, {
      iconName: "pi-stopwatch",
      title: "Time a small workflow here, to weight this server in a pool",
    }),
    button("Edit", edit, { iconName: "pi-pencil" }),
    button("Remove", remove, { iconName: "pi-trash", kind: "danger" }),
  ]);
  return h(
    "div",
    { className: "dp-actions" },
    button("Test", () => testServer(ctx, name), { iconName: "pi-bolt" }),
    button(server.enabled ? "Disable" : "Enable", switchOver, {
      iconName: server.enabled ? "pi-pause" : "pi-play",
    }),
    menu,
  );
}

/** A "more" menu: a native disclosure (keyboard and screen readers know it). Which one is
 * open is kept in the state, as the panel is drawn anew on every event; choosing an action
 * closes it. */
function actionMenu(state, name, actions) {
  const menu = h(
    "details",
    { className: "dp-menu", open: state.openMenu === name },
    h(
      "summary",
      {
        className: "dp-button",
        role: "button",
        title: "More actions",
        "aria-label": `More actions for ${name}`,
      },
      h("span", { "aria-hidden": "true" }, "⋯"),
    ),
    h("div", { className: "dp-menu-items", role: "group", "aria-label": `Actions for ${name}` }, actions),
  );
  menu.addEventListener("toggle", () => {
    if (menu.open) state.openMenu = name;
    else if (state.openMenu === name) state.openMenu = null;
  });
  menu.addEventListener("click", (event) => {
    if (event.target.closest?.(".dp-menu-items button")) {
      state.openMenu = null;
      menu.open = false;
    }
  });
  return menu;
}

function serverRow(ctx, name, server) {
  const { state } = ctx;
  const kind = serverState(server, state.status[name]);
  const [metrics, speed] = statusLines(server, state.status[name]);
  const details = [...metrics, ...speed];
  return h(
    "li",
    { className: `dp-server dp-${kind}`, "data-server": name },
    h(
      "div",
      { className: "dp-line" },
      h("span", { className: "dp-dot", role: "img", "aria-label": kind, title: kind }),
      h("strong", { className: "dp-name", title: server.url }, name),
      h("span", { className: "dp-state" }, kind),
      serverActions(ctx, name, server),
    ),
    h("div", { className: "dp-metrics", title: server.url }, details.join(" · ") || server.url),
    state.showModels.has(name) ? modelList(state, name) : null,
    state.editing === name ? serverForm(ctx, name, (saved) => testServer(ctx, saved)) : null,
  );
}

async function toggleModels(ctx, name) {
  const { state } = ctx;
  if (state.showModels.has(name)) {
    state.showModels.delete(name);
    return ctx.render();
  }
  if (!state.inventory || !state.inventory[name]) {
    const found = await ctx.attempt(() => ctx.call("GET", "/dispatch/inventory?refresh=1"));
    if (!found) return;
    state.inventory = found;
  }
  state.showModels.add(name);
  ctx.render();
}

function modelList(state, name) {
  const inventory = state.inventory && state.inventory[name];
  if (!inventory) return h("p", { className: "dp-empty" }, "Could not read this server's models.");
  const folders = Object.entries(inventory.models);
  const folder = ([folder, files]) =>
    h(
      "div",
      {},
      h("h4", {}, `${folder} (${files.length})`),
      h("ul", { className: "dp-nodes" }, files.map((f) => h("li", {}, f))),
    );
  return h(
    "div",
    { className: "dp-detail", "data-models": name },
    h("div", { className: "dp-muted" }, `${inventory.node_classes} node classes`),
    folders.length ? folders.map(folder) : h("p", { className: "dp-empty" }, "No model files."),
  );
}

export function serversSection(ctx) {
  const { state, attempt, call, render } = ctx;
  const add = () => {
    state.editing = "";
    render();
  };
  const refresh = async () => {
    const found = await attempt(() => call("GET", "/dispatch/status?refresh=1"));
    if (found) {
      applyStatus(state, found.servers);
      render();
    }
  };
  const servers = Object.entries(state.config.servers);
  return section(
    "Servers",
    [
      button("Add", add, { iconName: "pi-plus", title: "Add a server" }),
      button("Refresh", refresh, { iconName: "pi-refresh", title: "Ask every server now" }),
    ],
    state.editing === "" ? serverForm(ctx, null, (saved) => testServer(ctx, saved)) : null,
    listOr(
      servers,
      ([name, server]) => serverRow(ctx, name, server),
      "No server yet: add the URL of a ComfyUI.",
    ),
  );
}
