// The panel in a real browser: headless Chromium (Debian's) driven by playwright-core,
// against the standalone server and fake ComfyUI peers, each in its own process.
// Run by tests/test_browser.py; alone: `node --test tests/browser/` from the project root.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const PYTHON = process.env.PYTHON || "python3";
const SHOTS = process.env.SCREENSHOTS || join(ROOT, "test-output", "browser");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const INVERT = JSON.parse(readFileSync(join(ROOT, "scripting", "invert_api.json"), "utf8"));
const XSS = "<img src=x onerror=alert(1)>";
const FAKE_GPUS = "0, NVIDIA Fake GPU A, 24564 MiB\\n1, NVIDIA Fake GPU B, 12288 MiB\\n";

const processes = [];
const peers = {};
let base;
let browser;

/** Start a Python process and wait for the line that gives its URL. */
function start(args, pattern, env = process.env) {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
    processes.push(child);
    let seen = "";
    const timer = setTimeout(() => reject(new Error(`no URL from ${args.join(" ")}:\n${seen}`)), 20000);
    const read = (chunk) => {
      seen += chunk;
      const match = seen.match(pattern);
      if (match) {
        clearTimeout(timer);
        resolve({ child, url: match[1] });
      }
    };
    child.stdout.on("data", read);
    child.stderr.on("data", read);
    child.on("exit", (code) => reject(new Error(`${args.join(" ")} exited (${code}):\n${seen}`)));
  });
}

function freePort() {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

function startPeer(jobSeconds = 0.3) {
  return start(["-m", "dispatch_core.testing", "--port", "0", "--job-seconds", String(jobSeconds)], /peer on (http:\/\/\S+)/);
}

async function api(method, path, body) {
  const response = await fetch(base + path, {
    method,
    headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await response.json();
  assert.ok(response.ok, `${method} ${path}: ${JSON.stringify(data)}`);
  return data;
}

async function openPanel({ width = 300, colorScheme = "dark" } = {}) {
  const page = await browser.newPage({ viewport: { width, height: 1000 }, colorScheme });
  page.errors = [];
  page.dialogs = [];
  page.on("pageerror", (error) => page.errors.push(error.message));
  page.on("dialog", async (dialog) => {
    page.dialogs.push(dialog.message());
    await dialog.accept();
  });
  await page.goto(`${base}/dispatch/ui/`);
  await page.locator("li[data-server]").first().waitFor();
  return page;
}

function server(page, name, state) {
  return page.locator(`li[data-server="${name}"]${state ? `.dp-${state}` : ""}`);
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  for (const name of ["a", "b", "c", "d"]) peers[name] = await startPeer(name === "c" ? 20 : 0.3);
  const folder = mkdtempSync(join(tmpdir(), "dispatch-panel-"));
  const config = {
    servers: { "gpu-a": peers.a.url, "gpu-c": peers.c.url, laptop: { url: peers.d.url, enabled: false } },
    routes: { generate: "gpu-a", slow: "gpu-c" },
  };
  writeFileSync(join(folder, "config.json"), JSON.stringify(config));
  // a machine with two GPUs, as nvidia-smi reports them
  const bin = join(folder, "bin");
  mkdirSync(bin);
  writeFileSync(join(bin, "nvidia-smi"), `#!/bin/sh\nprintf '${FAKE_GPUS}'\n`);
  chmodSync(join(bin, "nvidia-smi"), 0o755);
  const served = await start(
    [
      "-m", "dispatch_core", "serve", "--config", join(folder, "config.json"), "--port", "0",
      "--status-every", "0.5", "--comfyui", join(ROOT, "tests", "browser", "fake-comfyui"),
    ],
    /panel on (http:\/\/\S+?)\/dispatch\/ui\//,
    { ...process.env, PATH: `${bin}${delimiter}${process.env.PATH}` },
  );
  base = served.url;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
});

after(async () => {
  if (browser) await browser.close();
  for (const child of processes) child.kill();
});

test("a server added turns online, and offline when its peer stops", async () => {
  const page = await openPanel();
  await page.getByRole("button", { name: "Add" }).first().click();
  const form = page.getByRole("form", { name: "Add a server" });
  await form.getByLabel("Name").fill("gpu-b");
  await form.getByLabel("URL").fill(peers.b.url);
  await form.getByRole("button", { name: "Add server" }).click();
  await server(page, "gpu-b", "online").waitFor({ timeout: 20000 });
  await page.screenshot({ path: join(SHOTS, "server-added.png"), fullPage: true });
  peers.b.child.kill();
  await server(page, "gpu-b", "offline").waitFor({ timeout: 15000 });
  assert.match(await server(page, "gpu-b").innerText(), /offline/);
  await page.screenshot({ path: join(SHOTS, "server-offline.png"), fullPage: true });
  assert.deepEqual(page.errors, []);
  await page.close();
});

test("a route edited in the panel is saved, with the version it was made on", async () => {
  const page = await openPanel();
  const versions = [];
  page.on("request", (request) => {
    if (request.method() === "PUT") versions.push(request.headers()["if-match"]);
  });
  const { version } = await api("GET", "/dispatch/config");
  const input = page.getByLabel("Servers of route generate");
  await input.fill("gpu-a, gpu-c");
  await page.locator('li[data-route="generate"]').getByRole("button", { name: "Save" }).click();
  await page.getByText("Saved route generate").waitFor();
  assert.equal(versions[0], `"${version}"`);
  const { config } = await api("GET", "/dispatch/config");
  assert.deepEqual(config.routes.generate, ["gpu-a", "gpu-c"]);
  await input.fill("gpu-a, nowhere");
  await input.press("Enter");
  await page.getByRole("alert").getByText(/nowhere/).waitFor();
  assert.deepEqual((await api("GET", "/dispatch/config")).config.routes.generate, ["gpu-a", "gpu-c"]);
  await api("PUT", "/dispatch/routes/generate", { servers: ["gpu-a"] });
  await page.close();
});

test("with a token, the panel asks once and keeps a cookie, never a URL", async () => {
  const TOKEN = "panel-token-7f3a";
  const folder = mkdtempSync(join(tmpdir(), "dispatch-token-"));
  writeFileSync(join(folder, "config.json"), JSON.stringify({ servers: { "gpu-a": peers.a.url } }));
  const guarded = await start(
    ["-m", "dispatch_core", "serve", "--config", join(folder, "config.json"), "--port", "0", "--token", TOKEN],
    /panel on (http:\/\/\S+?)\/dispatch\/ui\//,
  );
  const page = await browser.newPage();
  const urls = [];
  const prompts = [];
  page.on("request", (request) => urls.push(request.url()));
  page.on("dialog", async (dialog) => {
    prompts.push(dialog.message());
    await dialog.accept(TOKEN);
  });
  await page.goto(`${guarded.url}/dispatch/ui/`);
  await page.locator('li[data-server="gpu-a"]').waitFor({ timeout: 20000 });
  assert.equal(prompts.length, 1);
  assert.ok(urls.every((url) => !url.includes(TOKEN)), urls.join("\n"));
  const cookies = await page.context().cookies();
  const session = cookies.find((cookie) => cookie.name === "dispatch_session");
  assert.ok(session && session.httpOnly && !session.value.includes(TOKEN));
  await page.close();
  guarded.child.kill();
});

test("a template is saved from an API-format file, with its parameters shown", async () => {
  const page = await openPanel();
  await page.getByLabel("Template name").fill("invert");
  await page.getByLabel("API-format workflow file").setInputFiles({
    name: "invert_api.json",
    mimeType: "application/json",
    buffer: Buffer.from(JSON.stringify(INVERT)),
  });
  const row = page.locator('li[data-template="invert"]');
  await row.waitFor();
  await row.getByRole("button", { name: "Details" }).click();
  await row.locator("table").waitFor();
  assert.match(await row.innerText(), /EmptyImage/);
  const names = await row.getByLabel("Parameter name").evaluateAll((inputs) => inputs.map((i) => i.value));
  assert.ok(names.includes("width"), names.join(","));
  const templates = await api("GET", "/dispatch/templates");
  assert.ok(templates.some((t) => t.name === "invert"));
  await page.close();
});

test("a job appears with the thumbnail of its first image", async () => {
  await api("PUT", "/dispatch/templates/invert", { workflow: INVERT, overwrite: true });
  const page = await openPanel();
  const { id } = await api("POST", "/dispatch/run", { route: "generate", template: "invert" });
  const thumb = page.locator(`li[data-job="${id}"].dp-job-done img.dp-thumb`);
  await thumb.waitFor({ timeout: 15000 });
  await page.waitForFunction((selector) => document.querySelector(selector)?.naturalWidth > 0, `li[data-job="${id}"] img`);
  const job = await api("GET", `/dispatch/jobs/${id}`);
  assert.equal(job.state, "done");
  assert.equal(job.server, "gpu-a");
  await page.close();
});

test("a running job has a Cancel button that asks the dispatcher to stop it", async () => {
  // The dispatcher's answers are made up here: the panel is under test, not the route.
  await api("PUT", "/dispatch/templates/invert", { workflow: INVERT, overwrite: true });
  const page = await openPanel();
  const { id } = await api("POST", "/dispatch/run", { route: "slow", template: "invert" });
  const row = page.locator(`li[data-job="${id}"]`);
  await page.locator(`li[data-job="${id}"].dp-job-running`).waitFor({ timeout: 15000 });
  const job = await api("GET", `/dispatch/jobs/${id}`);
  const answers = [
    { status: 404, body: { error: "no such route here" } },
    { status: 200, body: { ...job, state: "cancelled", error: "cancelled" } },
  ];
  const asked = [];
  await page.route(`${base}/dispatch/jobs/${id}`, (route) => {
    if (route.request().method() !== "DELETE") return route.continue();
    asked.push(route.request().method());
    const { status, body } = answers.shift();
    return route.fulfill({ status, contentType: "application/json", body: JSON.stringify(body) });
  });
  await row.getByRole("button", { name: "Cancel" }).click();
  await page.getByRole("alert").getByText("no such route here").waitFor();
  await row.getByRole("button", { name: "Cancel" }).click();
  await page.locator(`li[data-job="${id}"].dp-job-cancelled`).waitFor();
  await page.getByRole("status").getByText(`Cancelled ${job.label}`).waitFor();
  assert.equal(await row.getByRole("button", { name: "Cancel" }).count(), 0);
  assert.deepEqual(asked, ["DELETE", "DELETE"]);
  assert.deepEqual(page.dialogs, [`Cancel job ${job.label}?`, `Cancel job ${job.label}?`]);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test("names from users and peers are shown as text, never run", async () => {
  await api("POST", "/dispatch/servers", { name: XSS, url: peers.a.url });
  const page = await openPanel();
  await page.getByText(XSS, { exact: true }).waitFor();
  await page.waitForTimeout(500);
  assert.equal(await page.locator('img[src="x"]').count(), 0);
  assert.deepEqual(page.dialogs, []);
  await page.close();
  await fetch(`${base}/dispatch/servers/${encodeURIComponent(XSS)}`, { method: "DELETE" });
});

test("three servers in different states, at 300 px, dark and light", async () => {
  await api("PUT", "/dispatch/templates/invert", { workflow: INVERT, overwrite: true });
  await api("POST", "/dispatch/run", { route: "slow", template: "invert" }); // gpu-c: busy
  for (const colorScheme of ["dark", "light"]) {
    const page = await openPanel({ colorScheme });
    await server(page, "gpu-a", "online").waitFor();
    await server(page, "gpu-b", "offline").waitFor();
    await server(page, "gpu-c", "busy").waitFor({ timeout: 20000 });
    await server(page, "laptop", "disabled").waitFor();
    await page.screenshot({ path: join(SHOTS, `panel-${colorScheme}.png`), fullPage: true });
    await page.close();
  }
});

test("four servers fit at 300 px: one line of actions each, the rare ones in a menu", async () => {
  const page = await openPanel();
  for (const name of ["gpu-a", "gpu-b", "gpu-c", "laptop"]) await server(page, name).waitFor();
  const heights = [];
  for (const name of ["gpu-a", "gpu-b", "gpu-c", "laptop"]) {
    heights.push((await server(page, name).boundingBox()).height);
  }
  assert.ok(heights.every((h) => h <= 60), `card heights ${heights}`);
  const card = server(page, "gpu-a");
  const free = card.getByRole("button", { name: "Free VRAM" });
  assert.equal(await free.isVisible(), false);
  await card.getByRole("button", { name: "More actions for gpu-a" }).click();
  await free.click();
  await page.getByText("Asked gpu-a to free its VRAM").waitFor();
  assert.equal(await free.isVisible(), false); // the menu closed
  assert.deepEqual(page.errors, []);
  await page.close();
});

test("a managed worker started from the panel becomes a server, shows its log, stops", async () => {
  const page = await openPanel();
  const form = page.getByRole("form", { name: "Start a worker" });
  await form.getByLabel("Worker name").fill("local-gpu1");
  await form.getByLabel("Worker port").fill(String(await freePort()));
  await form.getByLabel("Worker GPU").fill("1");
  await form.getByRole("button", { name: "Start worker" }).click();
  const worker = page.locator('li[data-worker="local-gpu1"]');
  await worker.locator(".dp-state", { hasText: "running" }).waitFor();
  await server(page, "local-gpu1", "online").waitFor({ timeout: 20000 });
  await worker.getByRole("button", { name: "Log" }).click();
  await worker.locator("pre", { hasText: "fake ComfyUI peer on" }).waitFor();
  await page.screenshot({ path: join(SHOTS, "worker.png"), fullPage: true });
  await worker.getByRole("button", { name: "Stop" }).click();
  await worker.locator(".dp-state", { hasText: "stopped" }).waitFor();
  await server(page, "local-gpu1", "disabled").waitFor();
  const listing = await api("GET", "/dispatch/workers");
  assert.equal(listing[0].gpu, "1");
  await api("DELETE", "/dispatch/workers/local-gpu1");
  await api("DELETE", "/dispatch/servers/local-gpu1");
  await page.close();
});

test("one click starts a worker on every GPU that has none", async () => {
  const page = await openPanel();
  const gpu = (index) => page.locator(`li[data-gpu="${index}"]`);
  await gpu(1).waitFor();
  assert.match(await gpu(0).innerText(), /GPU 0\s+NVIDIA Fake GPU A · 24 GB · no worker/);
  assert.match(await gpu(1).innerText(), /NVIDIA Fake GPU B · 12 GB · no worker/);
  const oneClick = page.getByRole("button", { name: "One worker per GPU" });
  await page.screenshot({ path: join(SHOTS, "gpus.png"), fullPage: true });
  await oneClick.click();
  await page.locator(".dp-message", { hasText: "Started gpu0, gpu1" }).waitFor();
  for (const name of ["gpu0", "gpu1"]) {
    await page.locator(`li[data-worker="${name}"] .dp-state`, { hasText: "running" }).waitFor();
    await server(page, name, "online").waitFor({ timeout: 20000 });
  }
  await gpu(1).filter({ hasText: "worker gpu1" }).waitFor();
  assert.equal(await oneClick.count(), 0, "every GPU has its worker: nothing to offer");
  await page.screenshot({ path: join(SHOTS, "gpus-workers.png"), fullPage: true });
  const workers = await api("GET", "/dispatch/workers");
  assert.deepEqual(workers.map((w) => [w.name, w.gpu]), [["gpu0", "0"], ["gpu1", "1"]]);
  assert.notEqual(workers[0].port, workers[1].port);
  for (const name of ["gpu0", "gpu1"]) {
    await api("DELETE", `/dispatch/workers/${name}`);
    await api("DELETE", `/dispatch/servers/${name}`);
  }
  assert.deepEqual(page.errors, []);
  await page.close();
});

test("keyboard: every control is reachable with Tab", async () => {
  const page = await openPanel();
  const reached = new Set();
  for (let i = 0; i < 150; i += 1) {
    await page.keyboard.press("Tab");
    reached.add(await page.evaluate(() => document.activeElement?.getAttribute("aria-label") || document.activeElement?.textContent?.trim()));
  }
  for (const label of ["Add", "Test", "More actions for gpu-a", "Servers of route generate", "Template name"]) {
    assert.ok(reached.has(label), `Tab never reached ${label}`);
  }
  await page.close();
});

test("the sidebar tab registers through ComfyUI's frontend API", async () => {
  // A page that provides `app` and `api` the way ComfyUI's frontend does: module shims at
  // /scripts/app.js and /scripts/api.js, the extension served under /extensions/<folder>/,
  // the routes under /api, registerExtension, then setup() once the app is ready.
  const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
  const errors = [];
  page.on("pageerror", (error) => errors.push(error.message));
  await page.route("http://comfy.test/**", async (route) => {
    const url = new URL(route.request().url());
    if (url.pathname === "/") return route.fulfill({ contentType: "text/html", body: COMFY_PAGE });
    if (url.pathname === "/scripts/app.js") return route.fulfill({ contentType: "text/javascript", body: "export const app = window.comfyAPI.app.app;" });
    if (url.pathname === "/scripts/api.js") return route.fulfill({ contentType: "text/javascript", body: "export const api = window.comfyAPI.api.api;" });
    if (url.pathname.startsWith("/extensions/ComfyUI-Dispatch/")) {
      const file = url.pathname.slice("/extensions/ComfyUI-Dispatch/".length);
      const type = file.endsWith(".css") ? "text/css" : "text/javascript";
      return route.fulfill({ contentType: type, body: readFileSync(join(ROOT, "web", file)) });
    }
    if (url.pathname.startsWith("/api/dispatch/")) {
      const headers = { ...route.request().headers() };
      delete headers.origin; // ComfyUI's page is same-origin with its routes
      const target = base + url.pathname.slice(4) + url.search;
      return route.fulfill({ response: await route.fetch({ url: target, headers }) });
    }
    return route.fulfill({ status: 404, body: "" });
  });
  await page.goto("http://comfy.test/");
  await page.waitForFunction(() => window.ready === true);
  const tab = await page.evaluate(() => {
    const [registered] = window.tabs;
    return { id: registered.id, type: registered.type, icon: registered.icon, title: registered.title, names: window.comfyAPI.app.app.extensions.map((e) => e.name) };
  });
  assert.deepEqual(tab, { id: "comfyui-dispatch", type: "custom", icon: "pi pi-share-alt", title: "Dispatch", names: ["ComfyUI-Dispatch.panel", "ComfyUI-Dispatch.node"] });

  await page.evaluate(() => window.tabs[0].render(document.getElementById("sidebar")));
  await page.locator('#sidebar li[data-server="gpu-a"]').waitFor();
  // reopening the tab renders into a fresh element, as the frontend does
  await page.evaluate(() => {
    window.tabs[0].destroy();
    document.getElementById("sidebar").replaceChildren();
    window.tabs[0].render(document.getElementById("sidebar"));
  });
  await page.locator('#sidebar li[data-server="gpu-a"]').waitFor();
  // an event that arrives while the panel loads is newer than what the load fetched

  // live updates arrive as the api's events (what PromptServer.send_sync becomes)
  await page.evaluate(() =>
    window.comfyAPI.api.api.dispatchEvent(new CustomEvent("dispatch.status", { detail: { servers: [{ name: "gpu-a", online: false, error: "test event", in_flight: 0 }] } })),
  );
  await page.locator('#sidebar li[data-server="gpu-a"].dp-offline').waitFor();

  // save the current graph, and only the selected nodes, as templates
  await page.evaluate((invert) => {
    window.graphOutput = invert;
    window.comfyAPI.app.app.canvas.selected_nodes = { 1: {}, 2: {} };
  }, INVERT);
  await page.locator("#sidebar").getByLabel("Template name").fill("from-graph");
  await page.locator("#sidebar").getByRole("button", { name: "Save graph" }).click();
  await page.locator('#sidebar li[data-template="from-graph"]').waitFor();
  await page.locator("#sidebar").getByLabel("Template name").fill("from-selection");
  await page.locator("#sidebar").getByRole("button", { name: "Save selection" }).click();
  await page.locator('#sidebar li[data-template="from-selection"]').waitFor();
  const selection = await api("GET", "/dispatch/templates/from-selection");
  assert.deepEqual(Object.keys(selection.workflow).sort(), ["1", "2"]);
  const toasts = await page.evaluate(() => window.toasts.map((t) => `${t.severity}: ${t.detail}`));
  assert.ok(toasts.some((t) => t.startsWith("success: Saved template from-graph")), toasts.join("\n"));
  const full = await api("GET", "/dispatch/templates/from-graph");
  assert.deepEqual(Object.keys(full.workflow).sort(), Object.keys(INVERT).sort());
  assert.ok(await page.evaluate(() => document.querySelector('link[href$="panel.css"]') !== null));
  await page.screenshot({ path: join(SHOTS, "sidebar-stub.png") });
  assert.deepEqual(errors, []);
  await page.close();
});

const COMFY_PAGE = `<!doctype html><html><body style="margin:0;background:#202020;color:#ddd">
<div id="sidebar" style="width:320px;height:900px"></div>
<script>
  const events = new EventTarget();
  window.tabs = [];
  window.toasts = [];
  const app = {
    extensions: [],
    registerExtension(extension) { this.extensions.push(extension); },
    extensionManager: {
      registerSidebarTab(tab) { window.tabs.push(tab); },
      toast: { add(message) { window.toasts.push(message); } },
      dialog: { confirm: async () => true },
    },
    canvas: { selected_nodes: {} },
    async graphToPrompt() { return { workflow: {}, output: window.graphOutput || {} }; },
  };
  const api = {
    fetchApi: (route, init) => fetch("/api" + route, { cache: "no-cache", ...init }),
    apiURL: (route) => "/api" + route,
    addEventListener: (type, handler) => events.addEventListener(type, handler),
    dispatchEvent: (event) => events.dispatchEvent(event),
  };
  window.comfyAPI = { app: { app }, api: { api } };
</script>
<script type="module">
  await import("/extensions/ComfyUI-Dispatch/dispatch.js");
  for (const extension of window.comfyAPI.app.app.extensions) await extension.setup?.(window.comfyAPI.app.app);
  window.ready = true;
</script></body></html>`;
