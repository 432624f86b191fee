// The Remote Dispatch node in ComfyUI's real frontend: a saved template's parameters become
// widgets typed from object_info, and their values are in the prompt the page queues. One
// test per version of tests/frontend_host/versions.json, against tests/frontend_host/serve.py.
// Run by tests/test_browser.py; alone: `node --test tests/browser/node.test.mjs`.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { SHOTS, VERSIONS, staticFolder, startServer, useBrowser } from "./frontends.mjs";

// A txt2img whose parameters cover every widget kind: INT with bounds (steps), FLOAT
// (cfg), a combo (sampler), multiline text (prompt), and a BOOLEAN of a node this ComfyUI
// does not know (typed by its value).
const TEMPLATE = {
  workflow: {
    4: { class_type: "CheckpointLoaderSimple", inputs: { ckpt_name: "sd15.safetensors" } },
    5: { class_type: "EmptyLatentImage", inputs: { width: 64, height: 64, batch_size: 1 } },
    6: { class_type: "CLIPTextEncode", _meta: { title: "Positive" }, inputs: { text: "a red jacket", clip: ["4", 1] } },
    7: { class_type: "CLIPTextEncode", inputs: { text: "blurry", clip: ["4", 1] } },
    3: {
      class_type: "KSampler",
      inputs: {
        seed: 1, steps: 20, cfg: 7.5, sampler_name: "euler", scheduler: "normal", denoise: 1,
        model: ["4", 0], positive: ["6", 0], negative: ["7", 0], latent_image: ["5", 0],
      },
    },
    8: { class_type: "VAEDecode", inputs: { samples: ["3", 0], vae: ["4", 2] } },
    9: { class_type: "SaveImage", inputs: { images: ["8", 0], filename_prefix: "t" } },
    10: { class_type: "SomeonesSwitch", inputs: { enabled: true } },
  },
  parameters: {
    prompt: "Positive.text", steps: "3.steps", cfg: "3.cfg", sampler: "3.sampler_name",
    hires: "10.enabled", seed: "3.seed",
  },
};

const browser = useBrowser();

const startHost = (version) => startServer("serve.py", version, "frontend host");

async function call(base, method, path, body) {
  const answer = await fetch(`${base}${path}`, {
    method,
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await answer.text();
  assert.ok(answer.ok, `${method} ${path}: ${answer.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** In the page: a Remote Dispatch node on template `name`, once its widgets are there. */
async function nodeWithTemplate(page, name) {
  return page.evaluate(async (name) => {
    const node = window.LiteGraph.createNode("RemoteDispatch");
    node.pos = [60, 60];
    window.app.graph.add(node);
    const template = node.widgets.find((w) => w.name === "template");
    template.value = name;
    template.callback?.(name);
    for (let i = 0; i < 100 && !node.widgets.some((w) => w.name.startsWith("param:")); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    return node.id;
  }, name);
}

function widgets(page, id) {
  return page.evaluate((id) => {
    const node = window.app.graph.getNodeById(id);
    return node.widgets
      .filter((w) => w.name.startsWith("param:"))
      .map((w) => ({
        name: w.name, label: w.label, type: w.type, value: w.value,
        min: w.options?.min, max: w.options?.max, values: w.options?.values,
      }));
  }, id);
}

for (const version of VERSIONS) {
  const absent = !existsSync(join(staticFolder(version), "index.html"));
  const skip = absent && `frontend ${version} not downloaded: python tests/frontend_host/fetch.py`;

  test(`frontend ${version}: a template's parameters are widgets, and reach the queued prompt`, { skip }, async () => {
    const host = await startHost(version);
    const context = await browser().newContext({ viewport: { width: 1200, height: 1000 } });
    try {
      await context.route("https://**", (route) => route.abort());
      const page = await context.newPage();
      const pageErrors = [];
      page.on("pageerror", (error) => pageErrors.push(error.stack || error.message));
      await call(host.base, "POST", "/api/settings", { "Comfy.TutorialCompleted": true });
      await call(host.base, "PUT", "/dispatch/templates/portrait", TEMPLATE);
      await page.goto(`${host.base}/`);
      await page.waitForFunction(() => window.app?.graph && window.comfyAPI?.widgets, null, { timeout: 60000 });
      await page.evaluate(() => window.app.graph.clear());

      const id = await nodeWithTemplate(page, "portrait");
      const found = Object.fromEntries((await widgets(page, id)).map((w) => [w.label, w]));
      assert.deepEqual(Object.keys(found), ["prompt", "steps", "cfg", "sampler", "hires"]); // not seed: the node has one
      assert.deepEqual([found.steps.type, found.steps.value, found.steps.min, found.steps.max], ["number", 20, 1, 10000]);
      assert.deepEqual([found.cfg.type, found.cfg.value, found.cfg.min, found.cfg.max], ["number", 7.5, 0, 100]);
      assert.equal(found.sampler.type, "combo");
      assert.ok(found.sampler.values.includes("euler") && found.sampler.values.includes("dpmpp_2m"));
      assert.equal(found.prompt.value, "a red jacket");
      assert.equal(found.prompt.type, "customtext"); // multiline
      assert.deepEqual([found.hires.type, found.hires.value], ["toggle", true]);

      const queued = await page.evaluate(async (id) => {
        const node = window.app.graph.getNodeById(id);
        const set = { "param:steps": 9, "param:prompt": "a lighthouse", "param:sampler": "dpmpp_2m", "param:hires": false };
        for (const widget of node.widgets) if (widget.name in set) widget.value = set[widget.name];
        const { output } = await window.app.graphToPrompt();
        const saved = window.app.graph.serialize().nodes.find((n) => String(n.id) === String(id))?.properties;
        return { inputs: output[String(id)].inputs, saved };
      }, id);
      assert.deepEqual(
        Object.fromEntries(Object.entries(queued.inputs).filter(([k]) => k.startsWith("param:"))),
        { "param:prompt": "a lighthouse", "param:steps": 9, "param:cfg": 7.5, "param:sampler": "dpmpp_2m", "param:hires": false },
      );
      assert.deepEqual(queued.saved.dispatchParams, { prompt: "a lighthouse", steps: 9, cfg: 7.5, sampler: "dpmpp_2m", hires: false });

      // The page queues it: the prompt the server receives holds the widgets' values.
      const promptId = await page.evaluate(async () => {
        const { output } = await window.app.graphToPrompt();
        const answer = await window.comfyAPI.api.api.queuePrompt(0, { output, workflow: {} });
        return answer.prompt_id;
      });
      let entry;
      for (let i = 0; i < 100 && !entry; i++) {
        entry = (await call(host.base, "GET", `/history/${promptId}`))[promptId];
        if (!entry) await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(entry, "the queued prompt never ran");
      const received = entry.prompt[2][String(id)].inputs;
      assert.equal(received["param:steps"], 9);
      assert.equal(received["param:prompt"], "a lighthouse");
      await page.screenshot({ path: join(SHOTS, `node-widgets-${version}.png`) });

      // A workflow saved and loaded again keeps the values, the widgets made anew.
      const reloaded = await page.evaluate(async () => {
        const saved = window.app.graph.serialize();
        await window.app.loadGraphData(saved);
        const node = (window.app.graph.nodes || window.app.graph._nodes).find((n) => n.comfyClass === "RemoteDispatch");
        for (let i = 0; i < 100 && !node.widgets.some((w) => w.name.startsWith("param:")); i++) {
          await new Promise((r) => setTimeout(r, 50));
        }
        await new Promise((r) => setTimeout(r, 300));
        return Object.fromEntries(node.widgets.filter((w) => w.name.startsWith("param:")).map((w) => [w.label, w.value]));
      });
      assert.deepEqual(reloaded, { prompt: "a lighthouse", steps: 9, cfg: 7.5, sampler: "dpmpp_2m", hires: false });
      // The settings are registered, and a job that fails says so in a toast by default.
      const settings = await page.evaluate(async () => {
        const base = "/extensions/ComfyUI-Dispatch/node/settings.js";
        const { jobToast, JOB_TOAST, DEFAULT_ROUTE } = await import(base);
        const setting = window.app.extensionManager.setting;
        const failed = { label: "portrait", state: "failed", server: "gpu-a", error: "CUDA out of memory" };
        const done = { label: "portrait", state: "done", server: "gpu-a", duration: 2.5, files: [{}] };
        return {
          toast: setting.get(JOB_TOAST),
          route: setting.get(DEFAULT_ROUTE),
          failed: jobToast(failed, setting.get(JOB_TOAST)),
          done: jobToast(done, setting.get(JOB_TOAST)),
          doneAll: jobToast(done, "when a job ends"),
          running: jobToast({ ...done, state: "running" }, "when a job ends"),
        };
      });
      assert.deepEqual(settings, {
        toast: "when a job fails",
        route: "",
        failed: { severity: "error", detail: "portrait on gpu-a failed: CUDA out of memory" },
        done: null,
        doneAll: { severity: "success", detail: "portrait on gpu-a: done in 2.5 s, 1 file(s)" },
        running: null,
      });
      assert.deepEqual(pageErrors.filter((e) => /ComfyUI-Dispatch/.test(e)), [], "page errors from the extension");
    } finally {
      await context.close();
      host.child.kill();
    }
  });
}
