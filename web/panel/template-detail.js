// A template opened in the Templates section: its parameters, editable as rows of a name
// and the NODE.INPUT targets it sets, and its nodes.
//
// This file has no side effects: ComfyUI imports every .js file under web/.

import { button, h, splitList } from "./dom.js";

/** The state of an opened template: {name, detail, rows: [[parameter, targets]]}. */
export function openedTemplate(name, detail) {
  const rows = Object.entries(detail.parameters).map(([parameter, targets]) => [
    parameter,
    targets.join(", "),
  ]);
  return { name, detail, rows };
}

function parameterRow(ctx, detail, row, index) {
  const cell = (column) => {
    const input = ctx.field(`param:${detail.name}:${index}:${column}`, {
      value: row[column],
      "aria-label": column ? "NODE.INPUT targets" : "Parameter name",
    });
    input.addEventListener("input", () => {
      row[column] = input.value;
    });
    return h("td", {}, input);
  };
  return h("tr", {}, [0, 1].map(cell));
}

function nodeLine([id, node]) {
  const title = node._meta && node._meta.title;
  return h(
    "li",
    {},
    h("code", {}, id),
    " ",
    node.class_type,
    title && title !== node.class_type ? ` “${title}”` : "",
  );
}

export function templateDetail(ctx, open) {
  const { detail, rows } = open;
  const addRow = () => {
    rows.push(["", ""]);
    ctx.render();
  };
  const saveParameters = async () => {
    const parameters = {};
    for (const [name, targets] of rows) {
      if (name.trim()) parameters[name.trim()] = splitList(targets);
    }
    const body = {
      workflow: detail.workflow,
      parameters,
      description: detail.description,
      overwrite: true,
    };
    const answer = await ctx.attempt(
      () => ctx.call("PUT", `/dispatch/templates/${encodeURIComponent(detail.name)}`, body),
      `Saved the parameters of ${detail.name}`,
    );
    if (answer) ctx.forget(`param:${detail.name}:`);
  };
  const nodes = Object.entries(detail.workflow).map(nodeLine);
  return h(
    "div",
    { className: "dp-detail" },
    h("h4", {}, "Parameters"),
    h(
      "table",
      { className: "dp-table" },
      h("thead", {}, h("tr", {}, h("th", {}, "name"), h("th", {}, "NODE.INPUT"))),
      h("tbody", {}, rows.map((row, index) => parameterRow(ctx, detail, row, index))),
    ),
    h(
      "div",
      { className: "dp-actions" },
      button("Add parameter", addRow, { iconName: "pi-plus" }),
      button("Save parameters", saveParameters, { iconName: "pi-check", kind: "primary" }),
    ),
    h("h4", {}, `Nodes (${nodes.length})`),
    h("ul", { className: "dp-nodes" }, nodes),
  );
}
