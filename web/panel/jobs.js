// The Jobs section: the recent jobs, newest first, each with the thumbnail of its first
// image; a queued or running job can be cancelled.
//
// This file has no side effects: ComfyUI imports every .js file under web/.

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
    queueLine(ctx.state.queue),
    listOr(ctx.state.jobs, (job) => jobRow(ctx, job), "No job yet.", "dp-list dp-jobs"),
  );
}
