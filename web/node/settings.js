// The Remote Dispatch nodes' settings in ComfyUI's settings dialog (category Dispatch):
// the route a new node starts with, and a toast when a dispatched job ends.
//
// No side effects: ComfyUI imports every .js file under web/; dispatch.js registers the
// extension this module describes.

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

/** The extension: settings, the toast on dispatch.job events, the default route. */
export function nodeExtension(app, api) {
  const setting = (id) => app.extensionManager?.setting?.get(id) ?? app.ui?.settings?.getSettingValue?.(id);
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
    },
    nodeCreated(node) {
      applyDefaultRoute(node, setting(DEFAULT_ROUTE));
    },
  };
}
