// Dispatch in ComfyUI's graph: where a group's nodes run, and where the whole graph runs.
//
// Right-click on a group: "Run group on ▸" lists here, the servers, the routes and the
// fan-outs of the Dispatch config. The choice is written into the group's title (see
// groups/target.js), which the server reads when the graph is queued. Right-click on the
// canvas: "Queue graph on ▸" sends the whole graph to a server or route now; Alt+Enter
// sends it again to the last one.

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { jobEndToasts, lastTarget, queueGraphOn } from "./groups/queue_on.js";
import { choices, parseTitle, refusals, setTarget } from "./groups/target.js";
import { groupWorkflow, members, templateName } from "./groups/template.js";

const QUEUE_ON_LAST = "ComfyUI-Dispatch.QueueOnLast";
const queuedHere = new Set();

let config = { servers: {}, routes: {} };

async function loadConfig() {
  try {
    const response = await api.fetchApi("/dispatch/config");
    if (response.ok) config = (await response.json()).config || config;
  } catch {
    // No dispatcher answering: the menu offers "here" only.
  }
}

function groupUnderMouse(canvas) {
  const [x, y] = canvas.graph_mouse || [0, 0];
  return canvas.graph?.getGroupOnPos?.(x, y) || null;
}

/** "Run group on ▸" for a group, "Run subgraph on ▸" for a subgraph node: both keep the
 * target in their title, which the server reads when the graph is queued. */
function runOnItem(item, what = "group") {
  const current = parseTitle(item.title).target;
  const options = choices(config).map(({ label, target }) => {
    const same = JSON.stringify(target) === JSON.stringify(current);
    return {
      content: same ? `✓ ${label}` : label,
      callback: () => {
        setTarget(item, target);
        app.graph.setDirtyCanvas(true, true);
        app.graph.change?.();
      },
    };
  });
  const title = `Run ${what} on`;
  return {
    content: current ? `${title} ▸ (${current.kind}: ${current.name})` : `${title} ▸`,
    has_submenu: true,
    submenu: { title, options },
  };
}

function isSubgraphNode(node) {
  return Boolean(node?.isSubgraphNode?.() || node?.subgraph);
}

async function saveGroupAsTemplate(group) {
  const name = templateName(parseTitle(group.title).name);
  const titleHeight = window.LiteGraph?.NODE_TITLE_HEIGHT ?? 30;
  const ids = members(group, app.graph.nodes, titleHeight);
  const { output } = await app.graphToPrompt();
  const { workflow, crossing } = groupWorkflow(output, ids);
  if (!workflow) {
    return toast("warn", `Not saved: a template runs alone, and ${crossing}. Move that node into the group or out`);
  }
  if (!Object.keys(workflow).length) return toast("warn", "Not saved: the group holds no nodes");
  const response = await api.fetchApi(`/dispatch/templates/${encodeURIComponent(name)}`, {
    method: "PUT",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ workflow, description: `Group '${name}' of a graph` }),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) return toast("error", `Not saved: ${answer.error || response.statusText}`);
  toast("success", `Saved the group as template '${name}'`);
}

function toast(severity, detail) {
  app.extensionManager?.toast?.add({ severity, summary: "Dispatch", detail, life: 6000 });
}

async function queueOn(target) {
  const id = await queueGraphOn({ app, api, toast }, target);
  if (id) queuedHere.add(id);
}

function queueOnItem() {
  const options = choices(config)
    .filter(({ target }) => target && target.kind !== "fan-out")
    .map(({ label, target }) => ({ content: label, callback: () => void queueOn(target) }));
  return { content: "Queue graph on ▸", has_submenu: true, submenu: { title: "Queue graph on", options } };
}

/** The items for the canvas menu: over a group, where it runs; elsewhere, the graph's. */
function menuItems(canvas) {
  void loadConfig(); // fresh for the next opening; this one uses what is known
  const group = groupUnderMouse(canvas);
  if (!group) return [null, queueOnItem()];
  const save = { content: "Save group as template", callback: () => void saveGroupAsTemplate(group) };
  return [null, runOnItem(group), save];
}

/** A refused remote group, said in a toast: newer frontends show validation details only
 * on demand, and this one tells what to move. */
function toastRefusals(error) {
  const answer = error?.response ?? error?.error ?? error;
  for (const text of refusals(answer)) {
    const [first, ...more] = text.split("\n");
    const rest = more.length ? ` (and ${more.length} more: see the node's error)` : "";
    app.extensionManager?.toast?.add({
      severity: "error",
      summary: "Remote group",
      detail: first + rest,
      life: 15000,
    });
  }
}

function watchQueueing() {
  const queuePrompt = api.queuePrompt.bind(api);
  api.queuePrompt = async (...args) => {
    try {
      return await queuePrompt(...args);
    } catch (error) {
      toastRefusals(error);
      throw error;
    }
  };
}

function extendMenu(canvas, method, items) {
  const original = canvas[method]?.bind(canvas);
  if (!original) return;
  canvas[method] = (...args) => {
    canvas.__dispatchMenuBuilt = true;
    let options;
    try {
      options = original(...args);
    } finally {
      canvas.__dispatchMenuBuilt = false;
    }
    return [...options, ...items(...args)];
  };
}

app.registerExtension({
  name: "ComfyUI-Dispatch.graph",
  commands: [
    {
      id: QUEUE_ON_LAST,
      label: "Queue the graph on the last Dispatch server or route",
      icon: "pi pi-share-alt",
      function: () => {
        const target = lastTarget();
        if (target) return queueOn(target);
        toast("warn", "Pick a server once: right-click the canvas, Queue graph on ▸");
      },
    },
  ],
  keybindings: [{ combo: { key: "Enter", alt: true }, commandId: QUEUE_ON_LAST }],
  // Frontends that collect menu items from extensions (1.28 and later).
  getCanvasMenuItems(canvas) {
    if (canvas.__dispatchMenuBuilt) return [];
    return menuItems(canvas);
  },
  getNodeMenuItems(node) {
    if (app.canvas?.__dispatchMenuBuilt || !isSubgraphNode(node)) return [];
    return [null, runOnItem(node, "subgraph")];
  },
  async setup() {
    watchQueueing();
    await loadConfig();
    const ended = jobEndToasts(queuedHere, toast);
    api.addEventListener("dispatch.job", (event) => ended(event.detail));
    api.addEventListener("dispatch.config", (event) => {
      config = event.detail?.config || config;
    });
    // Older frontends (1.27) build the menus in getCanvasMenuOptions/getNodeMenuOptions
    // only; newer ones call the extension hooks above from inside them: built once here.
    const canvas = app.canvas;
    extendMenu(canvas, "getCanvasMenuOptions", () => menuItems(canvas));
    extendMenu(canvas, "getNodeMenuOptions", (node) =>
      isSubgraphNode(node) ? [null, runOnItem(node, "subgraph")] : [],
    );
  },
});
