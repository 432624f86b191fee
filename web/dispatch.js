// ComfyUI-Dispatch in ComfyUI's UI: the Dispatch sidebar tab.
//
// The panel's state and event listeners are made once, in setup(): ComfyUI drops custom
// events that arrive before a listener for their type exists, and render() runs again on
// every opening of the tab.

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { createPanel } from "./panel.js";
import { nodeExtension } from "./node/settings.js";

function addStyles() {
  if (document.getElementById("comfyui-dispatch-css")) return;
  document.head.append(
    Object.assign(document.createElement("link"), {
      id: "comfyui-dispatch-css",
      rel: "stylesheet",
      href: new URL("./panel.css", import.meta.url).href,
    }),
  );
}

/** The current graph as an API prompt; with selectedOnly, only the selected nodes. */
async function graphPrompt(selectedOnly) {
  const { output } = await app.graphToPrompt();
  if (!selectedOnly) return output;
  const selected = new Set(Object.keys(app.canvas?.selected_nodes || {}).map(String));
  return Object.fromEntries(Object.entries(output).filter(([id]) => selected.has(id)));
}

const host = {
  fetch: (path, init) => api.fetchApi(path, init),
  url: (path) => api.apiURL(path),
  on: (event, handler) => api.addEventListener(event, (e) => handler(e.detail)),
  graph: graphPrompt,
  confirm: async (message) => {
    const dialog = app.extensionManager?.dialog;
    if (!dialog) return window.confirm(message);
    return Boolean(await dialog.confirm({ title: "Dispatch", message }));
  },
  notify: (severity, text) =>
    app.extensionManager?.toast?.add({
      severity,
      summary: "Dispatch",
      detail: text,
      life: severity === "error" ? 8000 : 3000,
    }),
};

app.registerExtension({
  name: "ComfyUI-Dispatch.panel",
  setup() {
    addStyles();
    const panel = createPanel(host);
    app.extensionManager.registerSidebarTab({
      id: "comfyui-dispatch",
      icon: "pi pi-share-alt",
      title: "Dispatch",
      tooltip: "Dispatch: GPU servers, routes, templates and jobs",
      type: "custom",
      render: (element) => panel.mount(element),
      destroy: () => panel.unmount(),
    });
  },
});

app.registerExtension(nodeExtension(app, api));
