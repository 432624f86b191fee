// The Jobs section: the recent jobs, newest first, each with the thumbnail of its first
// image; a queued or running job can be cancelled. Inside ComfyUI, the graph on the canvas
// can be sent as it is to a server or route from here.
//
// This file has no side effects: ComfyUI imports every .js file under web/.

import { runBody } from "../groups/queue_on.js";
import { button, h, listOr, section, seconds } from "./dom.js";

const IMAGE_FILE = /\.(png|jpe?g|webp|gif)$/i;
const CANCELLABLE = new Set(["queued", "running"]);

async function cancel(ctx, job) {
  if (!(await ctx.host.confirm(`Cancel job ${job.label}?`))) return;
  const path = `/dispatch/jobs/${encodeURIComponent(job.id)}`;
  const record = await ctx.attempt(() => ctx.call("DELETE", path));
  if (!record) return;
  if (record.id === job.id) ctx.jobArrived(record);
  const done = record.state === "cancelled" ? "Cancelled" : "Cancelling";
  ctx.say("ok", `${done} ${job.label}`);
}

function thumbnail(ctx, job) {
  const image = (job.files || []).find((f) => IMAGE_FILE.test(f.filename));
  if (!image) return h("div", { className: "dp-thumb dp-thumb-empty", "aria-hidden": "true" });
  return h("img", {
    className: "dp-thumb",
    src: ctx.host.url(image.download),
    alt: `first image of ${job.label}`,
    loading: "lazy",
  });
}

// The webhook's delivery as a short line: where, how it went, after how many attempts.
function webhookLine(job) {
  const hook = job.webhook;
  if (!hook) return null;
  const tries = hook.attempts === 1 ? "1 attempt" : `${hook.attempts} attempts`;
  const answer = hook.status ? `, last answer ${hook.status}` : "";
  const host = (() => {
    try {
      return new URL(hook.url).host;
    } catch {
      return "?";
    }
  })();
  const text = `webhook ${host}: ${hook.state} (${tries}${answer})`;
  const kind = hook.state === "failed" || hook.state === "refused" ? "dp-error-text" : "dp-muted";
  return h("div", { className: `${kind} dp-webhook`, title: hook.error || undefined }, text);
}

function jobRow(ctx, job) {
  const where = [job.server || job.route, seconds(job.duration)].filter(Boolean).join(" · ");
  return h(
    "li",
    { className: `dp-job dp-job-${job.state}`, "data-job": job.id },
    thumbnail(ctx, job),
    h(
      "div",
      {},
      h(
        "div",
        { className: "dp-line" },
        h("span", { className: "dp-badge" }, job.state),
        h("strong", {}, job.label),
      ),
      h("div", { className: "dp-muted" }, where),
      job.error ? h("div", { className: "dp-error-text" }, job.error) : null,
      webhookLine(job),
      CANCELLABLE.has(job.state)
        ? h(
            "div",
            { className: "dp-actions" },
            button("Cancel", () => cancel(ctx, job), { iconName: "pi-times", kind: "danger" }),
          )
        : null,
    ),
  );
}

/** "server:NAME" or "route:NAME" for each enabled server and each route. */
function runTargets(config) {
  const servers = Object.entries(config.servers || {})
    .filter(([, server]) => server.enabled !== false)
    .map(([name]) => [`server:${name}`, `Server: ${name}`]);
  const routes = Object.keys(config.routes || {}).map((name) => [`route:${name}`, `Route: ${name}`]);
  return [...servers, ...routes];
}

/** Run the graph on the canvas as it is, on the target chosen (POST /dispatch/run). */
function runGraphBar(ctx) {
  const targets = runTargets(ctx.state.config);
  if (!ctx.host.graph || !targets.length) return null;
  const chosen = ctx.state.runTarget; // kept across the panel's redraws
  const choice = h(
    "select",
    { "aria-label": "Run the graph on" },
    ...targets.map(([value, label]) => h("option", { value, selected: value === chosen }, label)),
  );
  choice.addEventListener("change", () => (ctx.state.runTarget = choice.value));
  const run = async () => {
    const workflow = await ctx.host.graph(false);
    if (!workflow || !Object.keys(workflow).length) return ctx.say("error", "The graph is empty");
    const [kind, ...rest] = choice.value.split(":");
    const target = { kind, name: rest.join(":") };
    const sent = `Sent the graph to ${kind} ${target.name}`;
    await ctx.attempt(() => ctx.call("POST", "/dispatch/run", runBody(workflow, target)), sent);
  };
  return h(
    "div",
    { className: "dp-line dp-run-graph" },
    h("span", {}, "Run this graph on "),
    choice,
    button("Run", run, { iconName: "pi-play", title: "Send the graph as it is, through the dispatcher" }),
  );
}

/** Where jobs wait: this dispatcher alone, or a Redis it shares with the others listed. */
function queueLine(queue) {
  if (!queue || queue.backend === "local") {
    return h("p", { className: "dp-muted dp-queue" }, "Queue: this dispatcher only (local)");
  }
  const others = (queue.processes || []).filter((p) => p.id !== queue.process);
  const names = others.map((p) => p.id).join(", ");
  const text =
    `Queue: shared on ${queue.backend} (${queue.url || "?"})` +
    (queue.connected === false ? ", not reachable now" : "") +
    (queue.same_config === false ? "; their servers or routes differ from this one's" : "") +
    (others.length ? `, with ${others.length} other dispatcher(s): ${names}` : ", no other dispatcher");
  return h("p", { className: "dp-muted dp-queue", "data-queue": queue.backend }, text);
}

export function jobsSection(ctx) {
  return section(
    "Jobs",
    [],
    runGraphBar(ctx) || "",
    queueLine(ctx.state.queue),
    listOr(ctx.state.jobs, (job) => jobRow(ctx, job), "No job yet.", "dp-list dp-jobs"),
  );
}
