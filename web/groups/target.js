// A remote group's target, kept in the group's title as `Name [server: gpu-b]`.
//
// The same rule as dispatch_core.groups (parse_title / titled): groups save no properties,
// so the title is what every frontend version saves, reloads, copies and pastes. Pure
// functions, no side effects: ComfyUI imports every .js file under web/.

const MARKER = /\s*\[\s*(server|route|fan-out)\s*:\s*([^\]\s/\\?#%][^\]/\\?#%]{0,63}?)\s*\]\s*$/i;

/** The colour a remote group is drawn in, so that it stands out from local ones. */
export const REMOTE_COLOR = "#3f5f8a";

/** { name, target } of a title; target is null for a local group, else { kind, name }. */
export function parseTitle(title) {
  const found = MARKER.exec(title || "");
  if (!found) return { name: (title || "").trim(), target: null };
  return {
    name: title.slice(0, found.index).trim(),
    target: { kind: found[1].toLowerCase(), name: found[2].trim() },
  };
}

/** The title that parseTitle reads as this name and target (null: run here). */
export function titled(title, target) {
  const { name } = parseTitle(title);
  return target ? `${name} [${target.kind}: ${target.name}]`.trim() : name;
}

/**
 * The "Run on" choices for a config ({ servers, routes }): here, each enabled server,
 * each route, and a fan-out over each route of more than one server.
 */
export function choices(config) {
  const servers = Object.entries(config?.servers || {})
    .filter(([, server]) => server.enabled !== false)
    .map(([name]) => ({ label: `Server: ${name}`, target: { kind: "server", name } }));
  const routes = Object.entries(config?.routes || {});
  const viaRoute = routes.map(([name]) => ({
    label: `Route: ${name}`,
    target: { kind: "route", name },
  }));
  const fanOut = routes
    .filter(([, names]) => names === "auto" || (Array.isArray(names) && names.length > 1))
    .map(([name]) => ({ label: `Fan-out: ${name}`, target: { kind: "fan-out", name } }));
  return [{ label: "Here (this ComfyUI)", target: null }, ...servers, ...viaRoute, ...fanOut];
}

/** Set a group's target: its title and its colour; the graph is marked changed. */
export function setTarget(group, target) {
  group.title = titled(group.title, target);
  group.color = target ? REMOTE_COLOR : undefined;
}

/**
 * The refusals of remote groups in an answer of POST /prompt ({ node_errors }): one text
 * per refused node, without ComfyUI's "group - " prefix. ComfyUI names the failing input
 * first; the message after it says what to move.
 */
export function refusals(answer) {
  const found = [];
  for (const node of Object.values(answer?.node_errors || {})) {
    if (node?.class_type !== "RemoteDispatchGroup") continue;
    for (const error of node.errors || []) {
      const text = String(error?.details || "").replace(/^group - /, "");
      if (text && !found.includes(text)) found.push(text);
    }
  }
  return found;
}
