// The Templates section: saving a workflow as a template (from the graph in ComfyUI, or
// from an API-format file), and each template's details, renaming and deletion.
//
// This file has no side effects: ComfyUI imports every .js file under web/.

import { button, h, icon, listOr, section, submitButton } from "./dom.js";
import { openedTemplate, templateDetail } from "./template-detail.js";

const templatePath = (name) => `/dispatch/templates/${encodeURIComponent(name)}`;

async function refreshTemplates(ctx) {
  try {
    ctx.state.templates = await ctx.call("GET", "/dispatch/templates");
  } catch {
    // the event, or the next load, will bring them
  }
}

async function saveTemplate(ctx, name, workflow) {
  const { call, say, attempt, host } = ctx;
  if (!name) return say("error", "Give the template a name");
  let answer = null;
  try {
    answer = await call("PUT", templatePath(name), { workflow });
  } catch (error) {
    if (!/exists already/.test(error.message)) return say("error", error.message);
    if (!(await host.confirm(`Replace template ${name}?`))) return null;
    answer = await attempt(() => call("PUT", templatePath(name), { workflow, overwrite: true }));
  }
  if (answer) {
    ctx.forget("template:name");
    await refreshTemplates(ctx);
    say("ok", `Saved template ${name} (${answer.nodes} nodes)`);
  }
  return answer;
}

async function toggleDetail(ctx, name) {
  const { state } = ctx;
  if (state.openTemplate && state.openTemplate.name === name) {
    state.openTemplate = null;
    return ctx.render();
  }
  const detail = await ctx.attempt(() => ctx.call("GET", templatePath(name)));
  if (detail) {
    state.openTemplate = openedTemplate(name, detail);
    ctx.forget(`param:${name}:`);
    ctx.render();
  }
}

function renameForm(ctx, name) {
  const key = `rename:${name}`;
  const newName = ctx.field(key, { value: name, "aria-label": `New name for ${name}` });
  const rename = async (event) => {
    event.preventDefault();
    const body = { name: newName.value.trim() };
    const answer = await ctx.attempt(
      () => ctx.call("POST", `${templatePath(name)}/rename`, body),
      `Renamed ${name}`,
    );
    if (answer) {
      if (ctx.state.openTemplate && ctx.state.openTemplate.name === name) {
        ctx.state.openTemplate = null;
      }
      ctx.state.renaming = null;
      ctx.forget(key);
      await refreshTemplates(ctx);
      ctx.render();
    }
  };
  return h("form", { className: "dp-inline", onsubmit: rename }, newName, submitButton("Rename"));
}

function templateRow(ctx, template) {
  const { state, attempt, call, say, host } = ctx;
  const name = template.name;
  const open = state.openTemplate && state.openTemplate.name === name;
  const startRenaming = () => {
    state.renaming = name;
    ctx.render();
    const input = ctx.find(`rename:${name}`);
    input.focus();
    input.select();
  };
  const remove = async () => {
    if (!(await host.confirm(`Delete template ${name}?`))) return;
    if (await attempt(() => call("DELETE", templatePath(name)))) {
      await refreshTemplates(ctx);
      say("ok", `Deleted ${name}`);
    }
  };
  const parameters = Object.keys(template.parameters || {}).join(", ") || "no parameters";
  const summary = template.error
    ? h("span", { className: "dp-error-text" }, template.error)
    : h("span", { className: "dp-muted" }, `${template.nodes} nodes · ${parameters}`);
  return h(
    "li",
    { className: "dp-template", "data-template": name },
    h("div", { className: "dp-line" }, h("strong", {}, name), summary),
    h(
      "div",
      { className: "dp-actions" },
      template.error
        ? null
        : button(open ? "Close" : "Details", () => toggleDetail(ctx, name), {
            iconName: "pi-list",
          }),
      state.renaming === name
        ? renameForm(ctx, name)
        : button("Rename", startRenaming, { iconName: "pi-pencil" }),
      button("Delete", remove, { iconName: "pi-trash", kind: "danger" }),
    ),
    open ? templateDetail(ctx, state.openTemplate) : null,
  );
}

/** The template's name, then the ways to give it a workflow. */
function saveBar(ctx) {
  const { host, say } = ctx;
  const name = ctx.field("template:name", {
    placeholder: "template name",
    "aria-label": "Template name",
  });
  const actions = [];
  if (host.graph) {
    const fromGraph = (selectedOnly) => async () => {
      const workflow = await host.graph(selectedOnly);
      if (!workflow || !Object.keys(workflow).length) {
        return say("error", selectedOnly ? "Select some nodes first" : "The graph is empty");
      }
      await saveTemplate(ctx, name.value.trim(), workflow);
    };
    actions.push(
      button("Save graph", fromGraph(false), {
        iconName: "pi-save",
        title: "Save the whole graph as a template",
      }),
      button("Save selection", fromGraph(true), {
        iconName: "pi-clone",
        title: "Save the selected nodes as a template",
      }),
    );
  }
  const file = h("input", {
    type: "file",
    accept: ".json,application/json",
    "aria-label": "API-format workflow file",
  });
  file.addEventListener("change", async () => {
    const chosen = file.files[0];
    if (!chosen) return;
    let workflow;
    try {
      workflow = JSON.parse(await chosen.text());
    } catch (error) {
      return say("error", `${chosen.name}: not JSON (${error.message})`);
    }
    await saveTemplate(ctx, name.value.trim() || chosen.name.replace(/\.json$/i, ""), workflow);
    file.value = "";
  });
  const upload = h(
    "label",
    { className: "dp-button dp-file" },
    icon("pi-upload"),
    "Upload API JSON",
    file,
  );
  return h("div", { className: "dp-form dp-inline" }, name, ...actions, upload);
}

export function templatesSection(ctx) {
  return section(
    "Templates",
    [],
    saveBar(ctx),
    listOr(ctx.state.templates, (template) => templateRow(ctx, template), "No template yet."),
  );
}
