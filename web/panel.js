// The Dispatch panel: servers, routes, templates and recent jobs.
//
// One panel serves both homes: ComfyUI's sidebar (dispatch.js) and the standalone server
// (standalone.html). Each passes a `host` that knows how to reach the routes and hear the
// events there:
//   host.fetch(path, init) → Response        host.url(path) → URL for <img src>
//   host.on(event, handler(detail))          host.confirm(message) → Promise<bool>
//   host.notify(severity, text)              host.graph?(selectedOnly) → API prompt | null
// Everything shown is set as text, never as HTML: names and messages come from users and
// peers.
//
// This file has no side effects: ComfyUI imports every .js file of the folder.

const EVENTS = ["dispatch.status", "dispatch.config", "dispatch.templates", "dispatch.job"];
const MASK = "********";
const IMAGE_FILE = /\.(png|jpe?g|webp|gif)$/i;
const KEEP_JOBS = 30;

/** Build an element; strings become text nodes, never markup. */
function h(tag, attributes = {}, ...children) {
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

function icon(name) {
  return h("i", { className: `pi ${name}`, "aria-hidden": "true" });
}

function button(label, onclick, { iconName, title, kind } = {}) {
  return h(
    "button",
    { type: "button", className: `dp-button${kind ? ` dp-${kind}` : ""}`, title, onclick },
    iconName ? icon(iconName) : null,
    label,
  );
}

function bytes(value) {
  if (typeof value !== "number") return "?";
  return `${(value / 1024 ** 3).toFixed(1)} GB`;
}

function seconds(value) {
  if (typeof value !== "number") return "";
  return value < 10 ? `${value.toFixed(1)} s` : `${Math.round(value)} s`;
}

/** online, busy, offline, disabled or unknown: what the dot shows. */
export function serverState(server, status) {
  if (!server.enabled) return "disabled";
  if (!status) return "unknown";
  if (!status.online) return "offline";
  if ((status.queue_depth || 0) > 0 || (status.in_flight || 0) > 0) return "busy";
  return "online";
}

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

export function createPanel(host) {
  const state = {
    config: { servers: {}, routes: {} },
    version: "",
    configError: null,
    warnings: [],
    status: {},
    templates: [],
    jobs: [],
    editing: null, // server name being edited, or "" for a new one
    openTemplate: null, // {name, detail, rows: [[parameter, targets]]}
    renaming: null, // template name being renamed
    inventory: null, // server → {node_classes, models: {folder: [files]}}, read when asked
    showModels: new Set(), // servers whose model lists are open
    workers: [],
    workerLog: null, // {name, text}
    message: null, // {kind, text}
  };
  let root = null;
  const drafts = new Map(); // what the user typed, by field key: survives every redraw

  /** An input (or textarea) whose typed value and focus survive redraws. */
  function field(key, attributes = {}, tag = "input") {
    const element = h(tag, { ...attributes, value: undefined, "data-key": key });
    element.value = drafts.has(key) ? drafts.get(key) : (attributes.value ?? "");
    element.addEventListener("input", () => drafts.set(key, element.value));
    return element;
  }

  function forget(prefix) {
    for (const key of [...drafts.keys()]) if (key.startsWith(prefix)) drafts.delete(key);
  }

  // Edits of the config carry the version they were made on: a change made meanwhile (in
  // another tab, or by a file edit) is refused instead of being overwritten.
  const CONFIG_EDIT = /^\/dispatch\/(config|settings|routes\/[^/]+|servers(\/[^/]+(\/(enable|disable))?)?)$/;

  async function call(method, path, body) {
    const init = { method, headers: {} };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    if (method !== "GET" && state.version && CONFIG_EDIT.test(path)) {
      init.headers["If-Match"] = `"${state.version}"`;
    }
    const response = await host.fetch(path, init);
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = { error: text };
    }
    if (!response.ok) {
      const field = data && data.field ? ` (${data.field})` : "";
      const error = new Error(`${(data && data.error) || response.statusText}${field}`);
      error.field = data && data.field;
      throw error;
    }
    return data;
  }

  function applyConfig(view) {
    state.config = view.config;
    state.version = view.version;
    state.configError = view.error;
    state.warnings = view.warnings || [];
  }

  function applyStatus(list) {
    state.status = Object.fromEntries(list.map((s) => [s.name, s]));
  }

  function say(kind, text) {
    state.message = { kind, text };
    if (host.notify) host.notify(kind === "error" ? "error" : "success", text);
    render();
  }

  /** Run a change; show its error instead of throwing, and re-render either way. */
  async function attempt(work, done) {
    try {
      const answer = await work();
      if (answer && answer.config && "version" in answer) applyConfig(answer);
      if (done) say("ok", done);
      else render();
      return answer;
    } catch (error) {
      say("error", error.message);
      if (error.field === "version") load(); // show what changed; the user applies it again
      return null;
    }
  }

  // Events counted by kind: a load never overwrites what a newer event brought meanwhile.
  const heard = { status: 0, config: 0, templates: 0, jobs: 0 };

  async function load() {
    const before = { ...heard };
    try {
      const [view, status, templates, jobs, workers] = await Promise.all([
        call("GET", "/dispatch/config"),
        call("GET", "/dispatch/status"),
        call("GET", "/dispatch/templates"),
        call("GET", "/dispatch/jobs?limit=" + KEEP_JOBS),
        call("GET", "/dispatch/workers"),
      ]);
      state.workers = workers;
      if (heard.config === before.config) applyConfig(view);
      if (heard.status === before.status) applyStatus(status.servers);
      if (heard.templates === before.templates) state.templates = templates;
      if (heard.jobs === before.jobs) state.jobs = jobs;
    } catch (error) {
      state.message = { kind: "error", text: `Cannot reach the dispatcher: ${error.message}` };
    }
    render();
  }

  const listeners = {
    "dispatch.status": (detail) => {
      heard.status += 1;
      applyStatus(detail.servers);
      render();
    },
    "dispatch.config": (detail) => {
      heard.config += 1;
      applyConfig(detail);
      render();
    },
    "dispatch.templates": (detail) => {
      heard.templates += 1;
      state.templates = detail.templates;
      render();
    },
    "dispatch.job": (job) => {
      heard.jobs += 1;
      state.jobs = [job, ...state.jobs.filter((j) => j.id !== job.id)].slice(0, KEEP_JOBS);
      render();
    },
  };
  for (const event of EVENTS) host.on(event, (detail) => listeners[event](detail));

  // -- servers ---------------------------------------------------------------------------

  async function testServer(name) {
    const found = await attempt(() => call("POST", `/dispatch/servers/${encodeURIComponent(name)}/test`));
    if (found) {
      state.status[name] = found;
      say(found.online ? "ok" : "error", found.online ? `${name} is online (ComfyUI ${found.comfyui_version})` : `${name} is offline: ${found.error}`);
    }
  }

  function serverForm(name) {
    const existing = name ? state.config.servers[name] : null;
    const prefix = `server:${name ?? ""}:`;
    const headerText = existing
      ? Object.keys(existing.headers || {}).map((k) => `${k}: ${MASK}`).join("\n")
      : "";
    const fields = {
      name: field(`${prefix}name`, { name: "name", value: name || "", required: true, autocomplete: "off" }),
      url: field(`${prefix}url`, { name: "url", value: existing ? existing.url : "http://", type: "url", required: true }),
      max_in_flight: field(`${prefix}max`, { name: "max_in_flight", type: "number", min: 1, value: existing ? existing.max_in_flight : 1 }),
      weight: field(`${prefix}weight`, { name: "weight", type: "number", min: 0.01, step: "any", value: existing ? existing.weight : 1 }),
      headers: field(`${prefix}headers`, { name: "headers", rows: 2, placeholder: "Authorization: Bearer …", value: headerText }, "textarea"),
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
        await testServer(body.name);
      }
    };
    const label = (text, input) => h("label", { className: "dp-field" }, h("span", {}, text), input);
    return h(
      "form",
      { className: "dp-form", onsubmit: submit, "aria-label": name ? `Edit server ${name}` : "Add a server" },
      label("Name", fields.name),
      label("URL", fields.url),
      h("div", { className: "dp-row" }, label("Jobs at once", fields.max_in_flight), label("Weight", fields.weight)),
      label("Headers (one per line; values stay hidden)", fields.headers),
      h(
        "div",
        { className: "dp-actions" },
        h("button", { type: "submit", className: "dp-button dp-primary" }, name ? "Save" : "Add server"),
        button("Cancel", () => {
          state.editing = null;
          forget(prefix);
          render();
        }),
      ),
    );
  }

  function serverRow(name, server) {
    const status = state.status[name];
    const kind = serverState(server, status);
    const metrics = [];
    if (status && status.online) {
      if (typeof status.latency_ms === "number") metrics.push(`${Math.round(status.latency_ms)} ms`);
      metrics.push(`queue ${status.queue_depth ?? "?"}`);
      metrics.push(`in flight ${status.in_flight}`);
      if (status.vram_total) metrics.push(`VRAM ${bytes(status.vram_total - status.vram_free)} / ${bytes(status.vram_total)}`);
    } else if (status && status.error && server.enabled) {
      metrics.push(status.error);
    }
    const speed = [];
    if (status && typeof status.seconds_per_job === "number") speed.push(`${seconds(status.seconds_per_job)}/job`);
    if (status && typeof status.calibrated_seconds === "number") speed.push(`calibrated ${seconds(status.calibrated_seconds)}`);
    if (status && status.loaded_models && status.loaded_models.length) speed.push(`holds ${status.loaded_models.join(", ")}`);
    const path = `/dispatch/servers/${encodeURIComponent(name)}`;
    return h(
      "li",
      { className: `dp-server dp-${kind}`, "data-server": name },
      h(
        "div",
        { className: "dp-line" },
        h("span", { className: "dp-dot", role: "img", "aria-label": kind, title: kind }),
        h("strong", { className: "dp-name" }, name),
        h("span", { className: "dp-state" }, kind),
      ),
      h("div", { className: "dp-url" }, server.url),
      metrics.length ? h("div", { className: "dp-metrics" }, metrics.join(" · ")) : null,
      speed.length ? h("div", { className: "dp-metrics" }, speed.join(" · ")) : null,
      h(
        "div",
        { className: "dp-actions" },
        button("Test", () => testServer(name), { iconName: "pi-bolt" }),
        button("Free VRAM", () => attempt(() => call("POST", `${path}/free`), `Asked ${name} to free its VRAM`), { iconName: "pi-eraser" }),
        button(state.showModels.has(name) ? "Hide models" : "Models", () => toggleModels(name), { iconName: "pi-box" }),
        button("Calibrate", async () => {
          const found = await attempt(() => call("POST", `${path}/calibrate`));
          if (found) say("ok", `${name}: ${seconds(found.calibrated_seconds)} per calibration job`);
        }, { iconName: "pi-stopwatch", title: "Time a small workflow here, to weight this server in a pool" }),
        button(server.enabled ? "Disable" : "Enable", () => attempt(() => call("POST", `${path}/${server.enabled ? "disable" : "enable"}`)), {
          iconName: server.enabled ? "pi-pause" : "pi-play",
        }),
        button("Edit", () => {
          state.editing = name;
          render();
        }, { iconName: "pi-pencil" }),
        button("Remove", async () => {
          if (await host.confirm(`Remove server ${name}?`)) await attempt(() => call("DELETE", path), `Removed ${name}`);
        }, { iconName: "pi-trash", kind: "danger" }),
      ),
      state.showModels.has(name) ? modelList(name) : null,
      state.editing === name ? serverForm(name) : null,
    );
  }

  async function toggleModels(name) {
    if (state.showModels.has(name)) {
      state.showModels.delete(name);
      return render();
    }
    if (!state.inventory || !state.inventory[name]) {
      const found = await attempt(() => call("GET", "/dispatch/inventory?refresh=1"));
      if (!found) return;
      state.inventory = found;
    }
    state.showModels.add(name);
    render();
  }

  function modelList(name) {
    const inventory = state.inventory && state.inventory[name];
    if (!inventory) return h("p", { className: "dp-empty" }, "Could not read this server's models.");
    const folders = Object.entries(inventory.models);
    return h(
      "div",
      { className: "dp-detail", "data-models": name },
      h("div", { className: "dp-muted" }, `${inventory.node_classes} node classes`),
      folders.length
        ? folders.map(([folder, files]) => h("div", {}, h("h4", {}, `${folder} (${files.length})`), h("ul", { className: "dp-nodes" }, files.map((f) => h("li", {}, f)))))
        : h("p", { className: "dp-empty" }, "No model files."),
    );
  }

  function serversSection() {
    const names = Object.keys(state.config.servers);
    return section(
      "Servers",
      [
        button("Add", () => {
          state.editing = "";
          render();
        }, { iconName: "pi-plus", title: "Add a server" }),
        button("Refresh", async () => {
          const found = await attempt(() => call("GET", "/dispatch/status?refresh=1"));
          if (found) {
            applyStatus(found.servers);
            render();
          }
        }, { iconName: "pi-refresh", title: "Ask every server now" }),
      ],
      state.editing === "" ? serverForm(null) : null,
      names.length
        ? h("ul", { className: "dp-list" }, names.map((name) => serverRow(name, state.config.servers[name])))
        : h("p", { className: "dp-empty" }, "No server yet: add the URL of a ComfyUI."),
    );
  }

  // -- routes ----------------------------------------------------------------------------

  function routeRow(route, servers) {
    const key = `route:${route}`;
    const input = field(key, { value: servers.join(", "), "aria-label": `Servers of route ${route}` });
    const save = async () => {
      const list = input.value.split(",").map((s) => s.trim()).filter(Boolean);
      const answer = await attempt(() => call("PUT", `/dispatch/routes/${encodeURIComponent(route)}`, { servers: list }), `Saved route ${route}`);
      if (answer) {
        forget(key);
        render();
      }
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") save();
    });
    return h(
      "li",
      { className: "dp-route", "data-route": route },
      h("div", { className: "dp-line" }, h("strong", {}, route), h("span", { className: "dp-arrow", "aria-hidden": "true" }, "→"), input),
      h(
        "div",
        { className: "dp-actions" },
        button("Save", save, { iconName: "pi-check" }),
        button("Remove", async () => {
          if (await host.confirm(`Remove route ${route}?`)) await attempt(() => call("DELETE", `/dispatch/routes/${encodeURIComponent(route)}`), `Removed route ${route}`);
        }, { iconName: "pi-trash", kind: "danger" }),
      ),
    );
  }

  function routesSection() {
    const routes = Object.entries(state.config.routes).map(([route, servers]) => [route, Array.isArray(servers) ? servers : [servers]]);
    const name = field("new-route:name", { placeholder: "workflow type, e.g. generate", "aria-label": "New route name" });
    const servers = field("new-route:servers", { placeholder: "server, several (a, b), or auto", "aria-label": "New route servers" });
    const add = async (event) => {
      event.preventDefault();
      const route = name.value.trim();
      if (!route) return say("error", "Give the route a name");
      const list = servers.value.split(",").map((s) => s.trim()).filter(Boolean);
      const answer = await attempt(() => call("PUT", `/dispatch/routes/${encodeURIComponent(route)}`, { servers: list }), `Added route ${route}`);
      if (answer) {
        forget("new-route:");
        render();
      }
    };
    return section(
      "Routes",
      [],
      state.warnings.map((text) => h("p", { className: "dp-warning", role: "status" }, icon("pi-exclamation-triangle"), " ", text)),
      routes.length ? h("ul", { className: "dp-list" }, routes.map(([route, list]) => routeRow(route, list))) : h("p", { className: "dp-empty" }, "No route yet."),
      h("form", { className: "dp-form dp-inline", onsubmit: add, "aria-label": "Add a route" }, name, servers, h("button", { type: "submit", className: "dp-button" }, "Add route")),
    );
  }

  // -- templates -------------------------------------------------------------------------

  async function refreshTemplates() {
    try {
      state.templates = await call("GET", "/dispatch/templates");
    } catch {
      // the event, or the next load, will bring them
    }
  }

  async function saveTemplate(name, workflow) {
    if (!name) return say("error", "Give the template a name");
    let answer = null;
    try {
      answer = await call("PUT", `/dispatch/templates/${encodeURIComponent(name)}`, { workflow });
    } catch (error) {
      if (!/exists already/.test(error.message)) return say("error", error.message);
      if (!(await host.confirm(`Replace template ${name}?`))) return null;
      answer = await attempt(() => call("PUT", `/dispatch/templates/${encodeURIComponent(name)}`, { workflow, overwrite: true }));
    }
    if (answer) {
      forget("template:name");
      await refreshTemplates();
      say("ok", `Saved template ${name} (${answer.nodes} nodes)`);
    }
    return answer;
  }

  async function openTemplate(name) {
    if (state.openTemplate && state.openTemplate.name === name) {
      state.openTemplate = null;
      return render();
    }
    const detail = await attempt(() => call("GET", `/dispatch/templates/${encodeURIComponent(name)}`));
    if (detail) {
      const rows = Object.entries(detail.parameters).map(([parameter, targets]) => [parameter, targets.join(", ")]);
      state.openTemplate = { name, detail, rows };
      forget(`param:${name}:`);
      render();
    }
  }

  function templateDetail(open) {
    const { detail, rows } = open;
    const body = h(
      "tbody",
      {},
      rows.map((row, index) =>
        h(
          "tr",
          {},
          [0, 1].map((column) => {
            const input = field(`param:${detail.name}:${index}:${column}`, { value: row[column], "aria-label": column ? "NODE.INPUT targets" : "Parameter name" });
            input.addEventListener("input", () => {
              row[column] = input.value;
            });
            return h("td", {}, input);
          }),
        ),
      ),
    );
    const addRow = () => {
      rows.push(["", ""]);
      render();
    };
    const saveParameters = async () => {
      const parameters = {};
      for (const [name, targets] of rows) {
        if (name.trim()) parameters[name.trim()] = targets.split(",").map((t) => t.trim()).filter(Boolean);
      }
      const answer = await attempt(
        () => call("PUT", `/dispatch/templates/${encodeURIComponent(detail.name)}`, { workflow: detail.workflow, parameters, description: detail.description, overwrite: true }),
        `Saved the parameters of ${detail.name}`,
      );
      if (answer) forget(`param:${detail.name}:`);
    };
    const nodes = Object.entries(detail.workflow).map(([id, node]) =>
      h("li", {}, h("code", {}, id), " ", node.class_type, node._meta && node._meta.title && node._meta.title !== node.class_type ? ` “${node._meta.title}”` : ""),
    );
    return h(
      "div",
      { className: "dp-detail" },
      h("h4", {}, "Parameters"),
      h("table", { className: "dp-table" }, h("thead", {}, h("tr", {}, h("th", {}, "name"), h("th", {}, "NODE.INPUT"))), body),
      h("div", { className: "dp-actions" }, button("Add parameter", () => addRow(), { iconName: "pi-plus" }), button("Save parameters", saveParameters, { iconName: "pi-check", kind: "primary" })),
      h("h4", {}, `Nodes (${nodes.length})`),
      h("ul", { className: "dp-nodes" }, nodes),
    );
  }

  function templateRow(template) {
    const name = template.name;
    const path = `/dispatch/templates/${encodeURIComponent(name)}`;
    const key = `rename:${name}`;
    const renaming = state.renaming === name;
    const newName = renaming ? field(key, { value: name, "aria-label": `New name for ${name}` }) : null;
    const rename = async (event) => {
      event.preventDefault();
      const answer = await attempt(() => call("POST", `${path}/rename`, { name: newName.value.trim() }), `Renamed ${name}`);
      if (answer) {
        if (state.openTemplate && state.openTemplate.name === name) state.openTemplate = null;
        state.renaming = null;
        forget(key);
        await refreshTemplates();
        render();
      }
    };
    return h(
      "li",
      { className: "dp-template", "data-template": name },
      h(
        "div",
        { className: "dp-line" },
        h("strong", {}, name),
        template.error ? h("span", { className: "dp-error-text" }, template.error) : h("span", { className: "dp-muted" }, `${template.nodes} nodes · ${Object.keys(template.parameters).join(", ") || "no parameters"}`),
      ),
      h(
        "div",
        { className: "dp-actions" },
        template.error ? null : button(state.openTemplate && state.openTemplate.name === name ? "Close" : "Details", () => openTemplate(name), { iconName: "pi-list" }),
        renaming
          ? h("form", { className: "dp-inline", onsubmit: rename }, newName, h("button", { type: "submit", className: "dp-button" }, "Rename"))
          : button("Rename", () => {
              state.renaming = name;
              render();
              const input = root.querySelector(`[data-key="${CSS.escape(key)}"]`);
              input.focus();
              input.select();
            }, { iconName: "pi-pencil" }),
        button("Delete", async () => {
          if (!(await host.confirm(`Delete template ${name}?`))) return;
          if (await attempt(() => call("DELETE", path))) {
            await refreshTemplates();
            say("ok", `Deleted ${name}`);
          }
        }, { iconName: "pi-trash", kind: "danger" }),
      ),
      state.openTemplate && state.openTemplate.name === name ? templateDetail(state.openTemplate) : null,
    );
  }

  function templatesSection() {
    const name = field("template:name", { placeholder: "template name", "aria-label": "Template name" });
    const actions = [];
    if (host.graph) {
      const fromGraph = (selectedOnly) => async () => {
        const workflow = await host.graph(selectedOnly);
        if (!workflow || !Object.keys(workflow).length) return say("error", selectedOnly ? "Select some nodes first" : "The graph is empty");
        await saveTemplate(name.value.trim(), workflow);
      };
      actions.push(button("Save graph", fromGraph(false), { iconName: "pi-save", title: "Save the whole graph as a template" }));
      actions.push(button("Save selection", fromGraph(true), { iconName: "pi-clone", title: "Save the selected nodes as a template" }));
    }
    const file = h("input", { type: "file", accept: ".json,application/json", "aria-label": "API-format workflow file" });
    file.addEventListener("change", async () => {
      const chosen = file.files[0];
      if (!chosen) return;
      let workflow;
      try {
        workflow = JSON.parse(await chosen.text());
      } catch (error) {
        return say("error", `${chosen.name}: not JSON (${error.message})`);
      }
      await saveTemplate(name.value.trim() || chosen.name.replace(/\.json$/i, ""), workflow);
      file.value = "";
    });
    return section(
      "Templates",
      [],
      h("div", { className: "dp-form dp-inline" }, name, ...actions, h("label", { className: "dp-button dp-file" }, icon("pi-upload"), "Upload API JSON", file)),
      state.templates.length ? h("ul", { className: "dp-list" }, state.templates.map(templateRow)) : h("p", { className: "dp-empty" }, "No template yet."),
    );
  }

  // -- managed workers -------------------------------------------------------------------

  async function refreshWorkers() {
    try {
      state.workers = await call("GET", "/dispatch/workers");
    } catch {
      // shown on the next load
    }
    render();
  }

  async function showLog(name) {
    if (state.workerLog && state.workerLog.name === name) {
      state.workerLog = null;
      return render();
    }
    const found = await attempt(() => call("GET", `/dispatch/workers/${encodeURIComponent(name)}/log?lines=200`));
    if (found) {
      state.workerLog = { name, text: found.log };
      render();
    }
  }

  function workerRow(worker) {
    const path = `/dispatch/workers/${encodeURIComponent(worker.name)}`;
    const running = worker.state === "running";
    return h(
      "li",
      { className: `dp-worker dp-worker-${worker.state}`, "data-worker": worker.name },
      h("div", { className: "dp-line" }, h("strong", {}, worker.name), h("span", { className: "dp-state" }, worker.state)),
      h("div", { className: "dp-muted" }, [`port ${worker.port}`, worker.gpu !== null && worker.gpu !== undefined ? `GPU ${worker.gpu}` : "GPU as ComfyUI picks", ...(worker.args || [])].join(" · ")),
      h(
        "div",
        { className: "dp-actions" },
        running
          ? button("Stop", async () => {
              await attempt(() => call("POST", `${path}/stop`), `Stopped ${worker.name}`);
              await refreshWorkers();
            }, { iconName: "pi-stop" })
          : button("Start", async () => {
              await attempt(() => call("POST", `${path}/start`), `Started ${worker.name}`);
              await refreshWorkers();
            }, { iconName: "pi-play" }),
        button(state.workerLog && state.workerLog.name === worker.name ? "Hide log" : "Log", () => showLog(worker.name), { iconName: "pi-file" }),
        button("Remove", async () => {
          if (!(await host.confirm(`Stop and remove worker ${worker.name}?`))) return;
          await attempt(() => call("DELETE", path), `Removed ${worker.name}`);
          await refreshWorkers();
        }, { iconName: "pi-trash", kind: "danger" }),
      ),
      state.workerLog && state.workerLog.name === worker.name ? h("pre", { className: "dp-log", tabindex: 0 }, state.workerLog.text || "(empty)") : null,
    );
  }

  function workersSection() {
    const fields = {
      name: field("worker:name", { placeholder: "name", "aria-label": "Worker name" }),
      port: field("worker:port", { placeholder: "port", type: "number", min: 1024, max: 65535, "aria-label": "Worker port" }),
      gpu: field("worker:gpu", { placeholder: "GPU", "aria-label": "Worker GPU" }),
      args: field("worker:args", { placeholder: "flags, e.g. --lowvram", "aria-label": "Worker flags" }),
    };
    const start = async (event) => {
      event.preventDefault();
      const body = {
        name: fields.name.value.trim(),
        port: Number(fields.port.value),
        gpu: fields.gpu.value.trim() || null,
        args: fields.args.value.split(/\s+/).filter(Boolean),
      };
      const answer = await attempt(() => call("POST", "/dispatch/workers", body), `Started ${body.name}`);
      if (answer) {
        forget("worker:");
        await refreshWorkers();
      }
    };
    return section(
      "Workers",
      [],
      h("p", { className: "dp-muted" }, "ComfyUI processes started here, one per GPU; each becomes a server."),
      state.workers.length ? h("ul", { className: "dp-list" }, state.workers.map(workerRow)) : null,
      h("form", { className: "dp-form dp-inline", onsubmit: start, "aria-label": "Start a worker" }, fields.name, fields.port, fields.gpu, fields.args, h("button", { type: "submit", className: "dp-button" }, "Start worker")),
    );
  }

  // -- jobs ------------------------------------------------------------------------------

  function jobRow(job) {
    const image = (job.files || []).find((f) => IMAGE_FILE.test(f.filename));
    return h(
      "li",
      { className: `dp-job dp-job-${job.state}`, "data-job": job.id },
      image ? h("img", { className: "dp-thumb", src: host.url(image.download), alt: `first image of ${job.label}`, loading: "lazy" }) : h("div", { className: "dp-thumb dp-thumb-empty", "aria-hidden": "true" }),
      h(
        "div",
        {},
        h("div", { className: "dp-line" }, h("span", { className: "dp-badge" }, job.state), h("strong", {}, job.label)),
        h("div", { className: "dp-muted" }, [job.server || job.route, seconds(job.duration)].filter(Boolean).join(" · ")),
        job.error ? h("div", { className: "dp-error-text" }, job.error) : null,
      ),
    );
  }

  function jobsSection() {
    return section(
      "Jobs",
      [],
      state.jobs.length ? h("ul", { className: "dp-list dp-jobs" }, state.jobs.map(jobRow)) : h("p", { className: "dp-empty" }, "No job yet."),
    );
  }

  // -- frame -----------------------------------------------------------------------------

  function section(title, tools, ...content) {
    const id = `dp-${title.toLowerCase()}`;
    return h(
      "section",
      { className: "dp-section", "aria-labelledby": id },
      h("header", { className: "dp-header" }, h("h3", { id }, title), h("div", { className: "dp-tools" }, tools)),
      content,
    );
  }

  function render() {
    if (!root) return;
    const focused = document.activeElement;
    const key = focused && root.contains(focused) ? focused.getAttribute("data-key") : null;
    const selection = key && typeof focused.selectionStart === "number" ? [focused.selectionStart, focused.selectionEnd] : null;
    const banner = state.configError ? h("p", { className: "dp-banner dp-error", role: "alert" }, state.configError) : null;
    const message = state.message ? h("p", { className: `dp-message dp-${state.message.kind}`, role: state.message.kind === "error" ? "alert" : "status" }, state.message.text) : null;
    root.replaceChildren(banner || "", message || "", serversSection(), routesSection(), templatesSection(), workersSection(), jobsSection());
    if (key) {
      const again = root.querySelector(`[data-key="${CSS.escape(key)}"]`);
      if (again) {
        again.focus();
        try {
          if (selection) again.setSelectionRange(...selection);
        } catch {
          // number inputs have no selection
        }
      }
    }
  }

  return {
    mount(element) {
      root = h("div", { className: "dispatch-panel" });
      element.replaceChildren(root);
      render();
      load();
    },
    unmount() {
      root = null;
    },
    state,
  };
}
