// The Dispatch panel: servers, routes, templates, workers and recent jobs.
//
// One panel serves both homes: ComfyUI's sidebar (dispatch.js) and the standalone server
// (standalone.html). Each passes a `host` that knows how to reach the routes and hear the
// events there:
//   host.fetch(path, init) → Response        host.url(path) → URL for <img src>
//   host.on(event, handler(detail))          host.confirm(message) → Promise<bool>
//   host.notify(severity, text)              host.graph?(selectedOnly) → API prompt | null
//   host.gateway?: true on the standalone gateway (its API keys are shown)
// Everything shown is set as text, never as HTML: names and messages come from users and
// peers.
//
// The parts live in panel/: api.js calls the routes, events.js hears the events and loads,
// dom.js builds elements, and one module draws each section. Each section is a function of
// a context (ctx below) that holds the state and the actions they share; every change
// redraws the whole panel, and typed values and focus survive it.
//
// No file here has side effects: ComfyUI imports every .js file under web/.

import { createApi } from "./panel/api.js";
import { createDrafts, h } from "./panel/dom.js";
import { applyConfig, createEvents } from "./panel/events.js";
import { jobsSection } from "./panel/jobs.js";
import { keysSection, loadKeys } from "./panel/keys.js";
import { routesSection } from "./panel/routes.js";
import { serversSection } from "./panel/servers.js";
import { templatesSection } from "./panel/templates.js";
import { workersSection } from "./panel/workers.js";

export { serverState } from "./panel/servers.js";

export function createPanel(host) {
  const state = {
    config: { servers: {}, routes: {} },
    version: "",
    configError: null,
    warnings: [],
    status: {},
    templates: [],
    jobs: [],
    runTarget: null, // "server:NAME" or "route:NAME": where "Run this graph on" sends it
    queue: null, // {backend, url?, process?, processes: [{id, since}]}: who shares the queue
    editing: null, // server name being edited, or "" for a new one
    openTemplate: null, // {name, detail, rows: [[parameter, targets]]}
    renaming: null, // template name being renamed
    inventory: null, // server → {node_classes, models: {folder: [files]}}, read when asked
    showModels: new Set(), // servers whose model lists are open
    workers: [],
    workerLog: null, // {name, text}
    gpus: null, // {gpus: [{index, name, memory_mb, workers}], source}, read when the panel loads
    message: null, // {kind, text}
    keys: null, // the gateway's API keys [{name, rate, created}]; null: no keys here
    newKey: null, // {name, key}: a key just made, shown once
  };
  let root = null;
  const { field, forget } = createDrafts();
  const call = createApi(host, () => state.version);
  const events = createEvents(host, state, call, render);

  function say(kind, text) {
    state.message = { kind, text };
    if (host.notify) host.notify(kind === "error" ? "error" : "success", text);
    render();
  }

  /** Run a change; show its error instead of throwing, and re-render either way. */
  async function attempt(work, done) {
    try {
      const answer = await work();
      if (answer && answer.config && "version" in answer) applyConfig(state, answer);
      if (done) say("ok", done);
      else render();
      return answer;
    } catch (error) {
      say("error", error.message);
      if (error.field === "version") events.load(); // show what changed; the user redoes it
      return null;
    }
  }

  /** The field with this draft key, as drawn now. */
  function find(key) {
    return root && root.querySelector(`[data-key="${CSS.escape(key)}"]`);
  }

  const ctx = {
    host, state, call, attempt, say, render, field, forget, find, jobArrived: events.job,
  };

  function banners() {
    const banner = state.configError
      ? h("p", { className: "dp-banner dp-error", role: "alert" }, state.configError)
      : null;
    const { message } = state;
    const line = message
      ? h(
          "p",
          {
            className: `dp-message dp-${message.kind}`,
            role: message.kind === "error" ? "alert" : "status",
          },
          message.text,
        )
      : null;
    return [banner || "", line || ""];
  }

  function render() {
    if (!root) return;
    const focused = document.activeElement;
    const key = focused && root.contains(focused) ? focused.getAttribute("data-key") : null;
    const selection =
      key && typeof focused.selectionStart === "number"
        ? [focused.selectionStart, focused.selectionEnd]
        : null;
    root.replaceChildren(
      ...banners(),
      serversSection(ctx),
      routesSection(ctx),
      templatesSection(ctx),
      workersSection(ctx),
      jobsSection(ctx),
      keysSection(ctx) || "",
    );
    const again = key && find(key);
    if (!again) return;
    again.focus();
    try {
      if (selection) again.setSelectionRange(...selection);
    } catch {
      // number inputs have no selection
    }
  }

  return {
    mount(element) {
      root = h("div", { className: "dispatch-panel" });
      element.replaceChildren(root);
      render();
      events.load();
      if (host.gateway) loadKeys(ctx); // keys are the standalone gateway's only
    },
    unmount() {
      root = null;
    },
    state,
  };
}
