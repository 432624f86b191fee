// Queue on ▸: the whole graph, as it is, sent through the dispatcher (POST /dispatch/run)
// to a server or a route, with a toast when it is queued and when it ends; its progress
// and images are in the Dispatch tab's Jobs list.
//
// No side effects: ComfyUI imports every .js file under web/.

const LAST = "ComfyUI-Dispatch.queueOn";

/** The target of the last Queue on (or null): what the keybinding queues on. */
export function lastTarget() {
  try {
    return JSON.parse(localStorage.getItem(LAST) || "null");
  } catch {
    return null;
  }
}

/** The body of POST /dispatch/run for a graph's API prompt and a target. */
export function runBody(prompt, target) {
  if (target.kind === "server") {
    return { route: `server:${target.name}`, server: target.name, workflow: prompt };
  }
  return { route: target.name, workflow: prompt };
}

/**
 * Send the current graph; the widgets' "control after generate" then moves on, as after
 * ComfyUI's own Queue, so that pressing again makes another image (and, on a pool,
 * lands on another server).
 */
export async function queueGraphOn({ app, api, toast }, target) {
  localStorage.setItem(LAST, JSON.stringify(target));
  const { output } = await app.graphToPrompt();
  const response = await api.fetchApi("/dispatch/run", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(runBody(output, target)),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    toast("error", `Not queued on ${target.kind} ${target.name}: ${answer.error || response.statusText}`);
    return null;
  }
  for (const node of app.graph.nodes) {
    for (const widget of node.widgets || []) widget.afterQueued?.();
  }
  toast("info", `Queued on ${target.kind} ${target.name}: job ${answer.id}`);
  return answer.id;
}

/** A toast for each job queued from here when it ends, from the dispatch.job events. */
export function jobEndToasts(ids, toast) {
  return (record) => {
    if (!ids.has(record?.id) || !["done", "failed", "cancelled"].includes(record.state)) return;
    ids.delete(record.id);
    if (record.state === "done") {
      const seconds = record.duration ? ` in ${record.duration.toFixed(1)} s` : "";
      const files = record.files?.length ? `, ${record.files.length} file(s)` : "";
      toast("success", `Done on ${record.server}${seconds}${files}: see the Dispatch tab`);
    } else {
      toast("error", `Job ${record.id} ${record.state}: ${record.error || "see the Dispatch tab"}`);
    }
  };
}
