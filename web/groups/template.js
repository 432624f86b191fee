// "Save group as template": a group whose nodes make a whole workflow, saved as one.
//
// A template is an API-format workflow a peer runs as it is, so a group saved as one must
// not take values from outside it nor give values to nodes outside it; the message says
// which link is in the way. Pure functions, no side effects.

const TEMPLATE_NAME = /[^A-Za-z0-9 _.()+-]+/g;

/**
 * The ids of the nodes a group holds, by the frontend's own rule (the centre of the node,
 * title bar included, inside the group's bounding), as the server reads groups too.
 */
export function members(group, nodes, titleHeight = 30) {
  const [x, y, w, h] = group.bounding || group._bounding || [0, 0, 0, 0];
  return nodes
    .filter((node) => {
      const cx = node.pos[0] + node.size[0] / 2;
      const cy = node.pos[1] - titleHeight + (node.size[1] + titleHeight) / 2;
      return cx >= x && cx <= x + w && cy >= y && cy <= y + h;
    })
    .map((node) => String(node.id));
}

/** The API prompt of those nodes, or the first link across the group's edge, as text. */
export function groupWorkflow(prompt, ids) {
  const inside = new Set(ids.filter((id) => id in prompt));
  const workflow = {};
  for (const [id, node] of Object.entries(prompt)) {
    for (const [name, value] of Object.entries(node.inputs || {})) {
      if (!Array.isArray(value) || value.length !== 2) continue;
      const from = String(value[0]);
      if (inside.has(id) !== inside.has(from)) {
        return { crossing: `the link from node ${from} to node ${id} input '${name}' crosses its edge` };
      }
    }
    if (inside.has(id)) workflow[id] = node;
  }
  return { workflow };
}

/** A template name from a group's name: the characters template names allow. */
export function templateName(name) {
  return (name || "").replace(TEMPLATE_NAME, " ").trim().slice(0, 80) || "group";
}
