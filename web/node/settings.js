// The Remote Dispatch nodes' settings in ComfyUI's settings dialog (category Dispatch):
// the route a new node starts with, and a toast when a dispatched job ends.
//
// The same extension gives the nodes their template's parameters as widgets (params.js)
// and refreshes their lists when templates, routes or servers change.
//
// No side effects: ComfyUI imports every .js file under web/; dispatch.js registers the
// extension this module describes.

import { PROPERTY, remember, setParamWidgets } from "./params.js";

export const DEFAULT_ROUTE = "Dispatch.Node.DefaultRoute";
export const JOB_TOAST = "Dispatch.Node.JobToast";
export const NODE_TYPES = new Set(["RemoteDispatch", "RemoteDispatchFanOut"]);

const TOAST_MODES = ["never", "when a job fails", "when a job ends"];

export const SETTINGS = [
  {
    id: DEFAULT_ROUTE,
    category: ["Dispatch", "Node", "Default route"],
    name: "Route of a new Remote Dispatch node",
    tooltip: "A route name (a workflow type such as 'generate'); empty: the first route.",
    type: "text",
    defaultValue: "",
  },
  {
    id: JOB_TOAST,
    category: ["Dispatch", "Node", "Job toast"],
    name: "Show a toast",
    tooltip: "A message in the corner when a dispatched job ends, or only when it fails.",
    type: "combo",
    options: TOAST_MODES,
    defaultValue: "when a job fails",
  },
];

/** The toast for a job's record, or null: only ended jobs, as the mode asks. */
export function jobToast(job, mode) {
  if (!job || !["done", "failed", "cancelled"].includes(job.state)) return null;
  if (mode === "never" || (mode !== "when a job ends" && job.state !== "failed")) return null;
  const where = job.server ? ` on ${job.server}` : "";
  const took = typeof job.duration === "number" ? ` in ${job.duration.toFixed(1)} s` : "";
  if (job.state === "failed") {
    return { severity: "error", detail: `${job.label}${where} failed: ${job.error || "no reason given"}` };
  }
  const files = job.files?.length ? `, ${job.files.length} file(s)` : "";
  const verb = job.state === "done" ? "done" : "cancelled";
  return { severity: job.state === "done" ? "success" : "warn", detail: `${job.label}${where}: ${verb}${took}${files}` };
}

/** Set a new node's route widget to the default route, when that route exists. */
export function applyDefaultRoute(node, route) {
  if (!route || !NODE_TYPES.has(node?.comfyClass)) return;
  const widget = node.widgets?.find((w) => w.name === "route");
  if (widget && (widget.options?.values || []).includes(route)) widget.value = route;
}

/** The frontend's own widget makers (scripts/widgets.js), read when first needed. */
function comfyWidgets() {
  return globalThis.comfyAPI?.widgets?.ComfyWidgets || {};
}

/** Give a node the widgets of the template it names; none without a template. */
async function loadParams(node, api, defs) {
  const name = node.widgets?.find((w) => w.name === "template")?.value;
  let template = { parameters: {} };
  if (name && !name.startsWith("(")) {
    const answer = await api.fetchApi(`/dispatch/templates/${encodeURIComponent(name)}`);
    if (answer.ok) template = await answer.json();
  }
  if (node.widgets?.find((w) => w.name === "template")?.value !== name) return; // changed meanwhile
  setParamWidgets(node, template, await defs(), comfyWidgets());
}

/** Hook a Remote Dispatch node: its template widget, its loading and its saving. */
function followTemplate(node, api, defs) {
  const load = () => loadParams(node, api, defs).catch((error) => console.warn("Dispatch:", error));
  const template = node.widgets?.find((w) => w.name === "template");
  if (template) {
    const callback = template.callback;
    template.callback = function (...args) {
      const answer = callback?.apply(this, args);
      load();
      return answer;
    };
  }
  const configure = node.onConfigure;
  node.onConfigure = function (...args) {
    const answer = configure?.apply(this, args);
    load(); // the saved template and parameter values are in place now
    return answer;
  };
  const serialize = node.onSerialize;
  node.onSerialize = function (data, ...rest) {
    serialize?.call(this, data, ...rest);
    remember(this);
    const values = JSON.parse(JSON.stringify(this.properties[PROPERTY] || {})); // plain, not a reactive proxy
    data.properties = { ...(data.properties || {}), [PROPERTY]: values };
  };
  node.dispatchReload = load;
  setTimeout(load, 0); // a node just added: its first template
}

/** The extension: settings, the toast on dispatch.job events, the default route, the
 * parameter widgets, and combo lists refreshed when the dispatcher's lists change. */
export function nodeExtension(app, api) {
  const setting = (id) => app.extensionManager?.setting?.get(id) ?? app.ui?.settings?.getSettingValue?.(id);
  let definitions = null;
  const defs = () => (definitions ??= api.getNodeDefs());
  let refreshing = null;
  const refresh = () => {
    if (refreshing) return;
    refreshing = setTimeout(async () => {
      refreshing = null;
      definitions = null;
      await app.refreshComboInNodes?.();
      for (const node of app.graph?._nodes || app.graph?.nodes || []) {
        if (NODE_TYPES.has(node.comfyClass)) node.dispatchReload?.(); // a template may have changed
      }
    }, 300);
  };
  return {
    name: "ComfyUI-Dispatch.node",
    settings: SETTINGS,
    setup() {
      api.addEventListener("dispatch.job", (event) => {
        const toast = jobToast(event.detail, setting(JOB_TOAST));
        if (toast) {
          app.extensionManager?.toast?.add({ ...toast, summary: "Dispatch", life: toast.severity === "error" ? 8000 : 4000 });
        }
      });
      api.addEventListener("dispatch.templates", refresh);
      api.addEventListener("dispatch.config", refresh);
    },
    nodeCreated(node) {
      if (!NODE_TYPES.has(node?.comfyClass)) return;
      applyDefaultRoute(node, setting(DEFAULT_ROUTE));
      followTemplate(node, api, defs);
    },
  };
}
