// The Workers section: ComfyUI processes the dispatcher starts and stops itself, one per
// GPU, each also a server; their logs; the form that starts one; the machine's GPUs, with
// one click for a worker on each that has none.
//
// This file has no side effects: ComfyUI imports every .js file under web/.

import { button, h, listOr, section, splitList, submitButton } from "./dom.js";

async function refreshWorkers(ctx) {
  const { state, call } = ctx;
  try {
    const [workers, gpus] = await Promise.all([
      call("GET", "/dispatch/workers"),
      state.gpus ? call("GET", "/dispatch/gpus") : null, // which GPUs have a worker now
    ]);
    state.workers = workers;
    if (gpus) state.gpus = gpus;
  } catch {
    // shown on the next load
  }
  ctx.render();
}

async function toggleLog(ctx, name) {
  const { state } = ctx;
  if (state.workerLog && state.workerLog.name === name) {
    state.workerLog = null;
    return ctx.render();
  }
  const path = `/dispatch/workers/${encodeURIComponent(name)}/log?lines=200`;
  const found = await ctx.attempt(() => ctx.call("GET", path));
  if (found) {
    state.workerLog = { name, text: found.log };
    ctx.render();
  }
}

function workerRow(ctx, worker) {
  const { state, attempt, call, host } = ctx;
  const path = `/dispatch/workers/${encodeURIComponent(worker.name)}`;
  const logShown = state.workerLog && state.workerLog.name === worker.name;
  const gpu = worker.gpu !== null && worker.gpu !== undefined;
  const facts = [`port ${worker.port}`, gpu ? `GPU ${worker.gpu}` : "GPU as ComfyUI picks"];
  const change = (action, done) => async () => {
    await attempt(() => call("POST", `${path}/${action}`), `${done} ${worker.name}`);
    await refreshWorkers(ctx);
  };
  const remove = async () => {
    if (!(await host.confirm(`Stop and remove worker ${worker.name}?`))) return;
    await attempt(() => call("DELETE", path), `Removed ${worker.name}`);
    await refreshWorkers(ctx);
  };
  return h(
    "li",
    { className: `dp-worker dp-worker-${worker.state}`, "data-worker": worker.name },
    h(
      "div",
      { className: "dp-line" },
      h("strong", {}, worker.name),
      h("span", { className: "dp-state" }, worker.state),
    ),
    h("div", { className: "dp-muted" }, [...facts, ...(worker.args || [])].join(" · ")),
    h(
      "div",
      { className: "dp-actions" },
      worker.state === "running"
        ? button("Stop", change("stop", "Stopped"), { iconName: "pi-stop" })
        : button("Start", change("start", "Started"), { iconName: "pi-play" }),
      button(logShown ? "Hide log" : "Log", () => toggleLog(ctx, worker.name), {
        iconName: "pi-file",
      }),
      button("Remove", remove, { iconName: "pi-trash", kind: "danger" }),
    ),
    logShown
      ? h("pre", { className: "dp-log", tabindex: 0 }, state.workerLog.text || "(empty)")
      : null,
  );
}

function startForm(ctx) {
  const { field } = ctx;
  const fields = {
    name: field("worker:name", { placeholder: "name", "aria-label": "Worker name" }),
    port: field("worker:port", {
      placeholder: "port",
      type: "number",
      min: 1024,
      max: 65535,
      "aria-label": "Worker port",
    }),
    gpu: field("worker:gpu", { placeholder: "GPU", "aria-label": "Worker GPU" }),
    args: field("worker:args", {
      placeholder: "flags, e.g. --lowvram",
      "aria-label": "Worker flags",
    }),
  };
  const start = async (event) => {
    event.preventDefault();
    const body = {
      name: fields.name.value.trim(),
      port: Number(fields.port.value),
      gpu: fields.gpu.value.trim() || null,
      args: splitList(fields.args.value, /\s+/),
    };
    const answer = await ctx.attempt(
      () => ctx.call("POST", "/dispatch/workers", body),
      `Started ${body.name}`,
    );
    if (answer) {
      ctx.forget("worker:");
      await refreshWorkers(ctx);
    }
  };
  return h(
    "form",
    { className: "dp-form dp-inline", onsubmit: start, "aria-label": "Start a worker" },
    Object.values(fields),
    submitButton("Start worker"),
  );
}

function gpuRow(gpu) {
  const memory = gpu.memory_mb ? `${Math.round(gpu.memory_mb / 1024)} GB` : null;
  const used = gpu.workers.length ? `worker ${gpu.workers.join(", ")}` : "no worker";
  return h(
    "li",
    { className: "dp-gpu", "data-gpu": String(gpu.index) },
    h("strong", {}, `GPU ${gpu.index}`),
    h("span", { className: "dp-muted" }, [gpu.name, memory, used].filter(Boolean).join(" · ")),
  );
}

/** The GPUs found, and the button that gives each without a worker one; nothing if none. */
function gpusPart(ctx) {
  const found = ctx.state.gpus;
  if (!found || !found.gpus.length) return null;
  const free = found.gpus.filter((gpu) => !gpu.workers.length);
  const startAll = async () => {
    const answer = await ctx.attempt(() => ctx.call("POST", "/dispatch/workers/per-gpu", {}));
    if (!answer) return;
    const names = answer.started.map((worker) => worker.name);
    ctx.say("ok", names.length ? `Started ${names.join(", ")}` : "Every GPU has a worker");
    await refreshWorkers(ctx);
  };
  return h(
    "div",
    { className: "dp-gpus" },
    listOr(found.gpus, gpuRow, null, "dp-list dp-gpu-list"),
    free.length
      ? button("One worker per GPU", startAll, {
          iconName: "pi-bolt",
          title: `Start a worker on ${free.map((gpu) => `GPU ${gpu.index}`).join(", ")}`,
        })
      : null,
  );
}

export function workersSection(ctx) {
  return section(
    "Workers",
    [],
    h(
      "p",
      { className: "dp-muted" },
      "ComfyUI processes started here, one per GPU; each becomes a server.",
    ),
    gpusPart(ctx),
    listOr(ctx.state.workers, (worker) => workerRow(ctx, worker)),
    startForm(ctx),
  );
}
