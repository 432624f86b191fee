// What the dispatcher tells the panel: its events, and the full load that fills the panel
// when it opens.
//
// Events are counted by kind: a load never overwrites what a newer event brought while it
// was under way.
//
// This file has no side effects: ComfyUI imports every .js file under web/.

export const KEEP_JOBS = 30;

export function applyConfig(state, view) {
  state.config = view.config;
  state.version = view.version;
  state.configError = view.error;
  state.warnings = view.warnings || [];
}

export function applyStatus(state, list) {
  state.status = Object.fromEntries(list.map((s) => [s.name, s]));
}

function applyJob(state, job) {
  state.jobs = [job, ...state.jobs.filter((j) => j.id !== job.id)].slice(0, KEEP_JOBS);
}

/**
 * Subscribe to the dispatcher's events through host.on; each updates the state, then
 * render() runs. Returns load(), which reads everything, and job(record), for a job's
 * record that an answer (not an event) brought.
 */
export function createEvents(host, state, call, render) {
  const heard = { status: 0, config: 0, templates: 0, jobs: 0 };
  const listeners = {
    "dispatch.status": (detail) => {
      heard.status += 1;
      applyStatus(state, detail.servers);
    },
    "dispatch.config": (detail) => {
      heard.config += 1;
      applyConfig(state, detail);
    },
    "dispatch.templates": (detail) => {
      heard.templates += 1;
      state.templates = detail.templates;
    },
    "dispatch.job": (job) => {
      heard.jobs += 1;
      applyJob(state, job);
    },
  };
  for (const [event, listener] of Object.entries(listeners)) {
    host.on(event, (detail) => {
      listener(detail);
      render();
    });
  }

  async function load() {
    const before = { ...heard };
    // apart: nvidia-smi can take a while, and the rest need not wait for it
    call("GET", "/dispatch/gpus").then(
      (gpus) => {
        state.gpus = gpus;
        render();
      },
      () => {}, // no GPUs to offer
    );
    try {
      const [view, status, templates, jobs, workers] = await Promise.all([
        call("GET", "/dispatch/config"),
        call("GET", "/dispatch/status"),
        call("GET", "/dispatch/templates"),
        call("GET", "/dispatch/jobs?limit=" + KEEP_JOBS),
        call("GET", "/dispatch/workers"),
      ]);
      state.workers = workers;
      if (heard.config === before.config) applyConfig(state, view);
      if (heard.status === before.status) applyStatus(state, status.servers);
      state.queue = status.queue || null;
      if (heard.templates === before.templates) state.templates = templates;
      if (heard.jobs === before.jobs) state.jobs = jobs;
    } catch (error) {
      state.message = { kind: "error", text: `Cannot reach the dispatcher: ${error.message}` };
    }
    render();
  }

  function job(record) {
    heard.jobs += 1;
    applyJob(state, record);
  }

  return { load, job };
}
