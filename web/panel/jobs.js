// The Jobs section: the recent jobs, newest first, each with the thumbnail of its first
// image.
//
// This file has no side effects: ComfyUI imports every .js file under web/.

import { h, listOr, section, seconds } from "./dom.js";

const IMAGE_FILE = /\.(png|jpe?g|webp|gif)$/i;

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
    ),
  );
}

export function jobsSection(ctx) {
  return section(
    "Jobs",
    [],
    listOr(ctx.state.jobs, (job) => jobRow(ctx, job), "No job yet.", "dp-list dp-jobs"),
  );
}
