// The Routes section: which servers each workflow type goes to, the config's warnings, and
// the form that adds a route.
//
// This file has no side effects: ComfyUI imports every .js file under web/.

import { button, h, icon, listOr, section, splitList, submitButton } from "./dom.js";

const routePath = (route) => `/dispatch/routes/${encodeURIComponent(route)}`;

function routeRow(ctx, route, servers) {
  const { attempt, call, forget, render, host } = ctx;
  const key = `route:${route}`;
  const input = ctx.field(key, {
    value: servers.join(", "),
    "aria-label": `Servers of route ${route}`,
  });
  const save = async () => {
    const body = { servers: splitList(input.value) };
    const answer = await attempt(() => call("PUT", routePath(route), body), `Saved route ${route}`);
    if (answer) {
      forget(key);
      render();
    }
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") save();
  });
  const remove = async () => {
    if (await host.confirm(`Remove route ${route}?`)) {
      await attempt(() => call("DELETE", routePath(route)), `Removed route ${route}`);
    }
  };
  return h(
    "li",
    { className: "dp-route", "data-route": route },
    h(
      "div",
      { className: "dp-line" },
      h("strong", {}, route),
      h("span", { className: "dp-arrow", "aria-hidden": "true" }, "→"),
      input,
    ),
    h(
      "div",
      { className: "dp-actions" },
      button("Save", save, { iconName: "pi-check" }),
      button("Remove", remove, { iconName: "pi-trash", kind: "danger" }),
    ),
  );
}

function addRouteForm(ctx) {
  const { attempt, call, say, forget, render } = ctx;
  const name = ctx.field("new-route:name", {
    placeholder: "workflow type, e.g. generate",
    "aria-label": "New route name",
  });
  const servers = ctx.field("new-route:servers", {
    placeholder: "server, several (a, b), or auto",
    "aria-label": "New route servers",
  });
  const add = async (event) => {
    event.preventDefault();
    const route = name.value.trim();
    if (!route) return say("error", "Give the route a name");
    const body = { servers: splitList(servers.value) };
    const answer = await attempt(() => call("PUT", routePath(route), body), `Added route ${route}`);
    if (answer) {
      forget("new-route:");
      render();
    }
  };
  return h(
    "form",
    { className: "dp-form dp-inline", onsubmit: add, "aria-label": "Add a route" },
    name,
    servers,
    submitButton("Add route"),
  );
}

export function routesSection(ctx) {
  const { state } = ctx;
  const routes = Object.entries(state.config.routes).map(([route, servers]) => [
    route,
    Array.isArray(servers) ? servers : [servers],
  ]);
  const warning = (text) =>
    h("p", { className: "dp-warning", role: "status" }, icon("pi-exclamation-triangle"), " ", text);
  return section(
    "Routes",
    [],
    state.warnings.map(warning),
    listOr(routes, ([route, servers]) => routeRow(ctx, route, servers), "No route yet."),
    addRouteForm(ctx),
  );
}
