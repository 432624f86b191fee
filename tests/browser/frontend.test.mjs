// The Dispatch tab in ComfyUI's real frontend: the comfyui-frontend-package wheel, at each
// version of tests/frontend_host/versions.json, served by tests/frontend_host/serve.py with
// this repository's web/ as a custom node's WEB_DIRECTORY and two fake GPU servers.
// Run by tests/test_browser.py (one version each, FRONTENDS=1.27.10); alone, after
// `python tests/frontend_host/fetch.py`: `node --test tests/browser/frontend.test.mjs`.

import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { ROOT, SHOTS, TAB, VERSIONS, staticFolder, startServer, useBrowser } from "./frontends.mjs";

// Errors the frontend makes on its own, with or without this extension, each with where it
// comes from; an error whose stack passes through our files is never one of them.
const KNOWN_PAGE_ERRORS = {
  "1.27.10": [
    {
      message: /^Cannot read properties of undefined \(reading 'id'\)$/,
      stack: /at Proxy\.addSetting/,
      why: "Comfy.Canvas.NavigationMode's onChange sets two settings not registered yet, on a first start",
    },
  ],
};

const browser = useBrowser();

/** Serve one frontend; resolves with the host's process and base URL (no trailing slash). */
const startHost = (version) => startServer("serve.py", version, "frontend host");

/** What a real ComfyUI 0.3.64 answered this page, by "METHOD path", from its recording. */
function recordedStatuses(version) {
  const folder = join(ROOT, "tests", "protocol");
  const own = `frontend_requests_${version}.json`;
  const files = existsSync(join(folder, own))
    ? [own]
    : readdirSync(folder).filter((name) => name.startsWith("frontend_requests_"));
  const statuses = new Map();
  for (const file of files) {
    for (const r of JSON.parse(readFileSync(join(folder, file), "utf8")).requests) {
      statuses.set(`${r.method} ${r.path}`, r.status);
    }
  }
  return statuses;
}

function isOurs(text) {
  return /ComfyUI-Dispatch|\/dispatch\//i.test(text);
}

for (const version of VERSIONS) {
  const absent = !existsSync(join(staticFolder(version), "index.html"));
  const skip = absent && `frontend ${version} not downloaded: python tests/frontend_host/fetch.py`;

  test(`frontend ${version}: the Dispatch tab lists the servers online`, { skip }, async (t) => {
    const host = await startHost(version);
    const context = await browser().newContext({ viewport: { width: 1400, height: 900 } });
    try {
      await context.route("https://**", (route) => route.abort()); // no internet: comfy.org's news
      const page = await context.newPage();
      const pageErrors = [];
      const consoleErrors = [];
      const answers = [];
      const frames = [];
      page.on("pageerror", (error) => pageErrors.push(error));
      page.on("console", (message) => {
        if (message.type() === "error") consoleErrors.push(message.text());
      });
      page.on("response", (response) => {
        const url = new URL(response.url());
        if (url.origin === host.base) {
          answers.push({ method: response.request().method(), path: url.pathname, status: response.status() });
        }
      });
      page.on("websocket", (socket) => socket.on("framereceived", ({ payload }) => frames.push(String(payload))));

      // a user who has seen the tutorial: no template browser over the page on first start
      const stored = await fetch(`${host.base}/api/settings`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ "Comfy.TutorialCompleted": true }),
      });
      assert.equal(stored.status, 200);

      await page.goto(`${host.base}/`);
      const button = page.getByRole("button", { name: TAB, exact: true });
      await button.waitFor({ timeout: 60000 });
      const loaded = await page.evaluate(() => window.app.extensions.map((e) => e.name));
      assert.ok(loaded.includes("ComfyUI-Dispatch.panel"), loaded.join(", "));

      await button.click();
      const servers = page.locator("li[data-server]");
      for (const name of ["gpu-a", "gpu-b"]) {
        await page.locator(`li[data-server="${name}"].dp-online`).waitFor({ timeout: 20000 });
      }
      assert.equal(await servers.count(), 2);
      assert.match(await servers.first().innerText(), /online/);
      await page.screenshot({ path: join(SHOTS, `frontend-${version}.png`) });

      // A change made elsewhere reaches the tab as an event on the frontend's own socket
      // (what PromptServer.send_sync becomes), not through anything the page asked for.
      const disabled = await fetch(`${host.base}/dispatch/servers/gpu-b/disable`, { method: "POST" });
      assert.equal(disabled.status, 200, await disabled.text());
      await page.locator('li[data-server="gpu-b"].dp-disabled').waitFor({ timeout: 10000 });
      await page.locator('li[data-server="gpu-a"].dp-online').waitFor();

      const status = frames.map((f) => JSON.parse(f)).find((m) => m.type === "status");
      assert.ok(status && status.data.sid, "the page's /ws never sent its status frame");
      assert.ok(frames.some((f) => f.includes('"dispatch.config"')), "no dispatch event on /ws");

      // Every route the page called answered as the real ComfyUI did (its 404s included),
      // and anything it was not recorded asking for answered without an error.
      const recorded = recordedStatuses(version);
      const wrong = answers
        .filter((a) => /^\/(api|internal)\//.test(a.path))
        .filter((a) => a.status !== (recorded.get(`${a.method} ${a.path}`) ?? a.status) || (!recorded.has(`${a.method} ${a.path}`) && a.status >= 400));
      assert.deepEqual(wrong, [], "answers unlike a real ComfyUI 0.3.64's");
      const ourFiles = answers.filter((a) => isOurs(a.path));
      assert.ok(ourFiles.some((a) => a.path === "/extensions/ComfyUI-Dispatch/dispatch.js" && a.status === 200));
      assert.deepEqual(ourFiles.filter((a) => a.status >= 400), []);

      const known = KNOWN_PAGE_ERRORS[version] || [];
      const unexpected = pageErrors.filter(
        (e) => isOurs(e.stack || "") || !known.some((k) => k.message.test(e.message) && k.stack.test(e.stack || "")),
      );
      assert.deepEqual(unexpected.map((e) => e.stack || e.message), [], "page errors");
      for (const error of pageErrors) t.diagnostic(`ignored, the frontend's own: ${error.message}`);
      assert.deepEqual(consoleErrors.filter(isOurs), [], "console errors about the extension");
    } finally {
      await context.close();
      host.child.kill();
    }
  });

  test(`frontend ${version}: a remote group runs on its server and hands its image back`, { skip }, () =>
    withPage(version, async (host, page) => {
      const frames = [];
      page.on("websocket", (socket) => socket.on("framereceived", ({ payload }) => frames.push(String(payload))));
      await openPage(page, host);
      await loadWorkflow(page, "remote_group.json");

      // The group's menu sets its target, which a save and a reload keep.
      await runGroupOn(page, "Edit", "Server: gpu-a");
      const saved = await page.evaluate(() => JSON.stringify(window.app.graph.serialize()));
      await page.evaluate(async (text) => window.app.loadGraphData(JSON.parse(text)), saved);
      assert.deepEqual(await groupTitles(page), ["Edit [server: gpu-a]"]);

      await page.evaluate(() => window.app.queuePrompt(0, 1));
      const executed = await waitForFrame(frames, (m) => m.type === "executed" && m.data.node === "3");
      const image = executed.data.output.images[0];
      const query = new URLSearchParams({ filename: image.filename, subfolder: image.subfolder, type: image.type });
      const pixel = await page.evaluate(async (url) => {
        const picture = new Image();
        picture.src = url;
        await picture.decode();
        const canvas = Object.assign(document.createElement("canvas"), { width: 1, height: 1 });
        const drawing = canvas.getContext("2d");
        drawing.drawImage(picture, 0, 0);
        return [...drawing.getImageData(0, 0, 1, 1).data];
      }, `${host.base}/api/view?${query}`);
      assert.deepEqual(pixel, [0, 255, 255, 255], "the local SaveImage has the peer's inverted red");
      await page.screenshot({ path: join(SHOTS, `remote-group-${version}.png`) });

      const config = await (await fetch(`${host.base}/dispatch/config`)).json();
      const history = await (await fetch(`${config.config.servers["gpu-a"].url}/history`)).json();
      const ran = Object.values(history).map((entry) => Object.values(entry.prompt[2]).map((n) => n.class_type).sort());
      assert.deepEqual(ran, [["ImageInvert", "LoadImage", "PreviewImage"]], "the group ran on gpu-a");

      // The group saved as a template from its menu: only it takes values from outside,
      // so it is refused, saying which link; a group of the whole graph is saved.
      await openGroupMenu(page, "Edit");
      await menuItem(page, "Save group as template").click();
      await page.getByText(/Not saved: a template runs alone, and the link from node 1 to node 2 input 'image' crosses its edge/).first().waitFor();
      await page.evaluate(() => {
        const group = window.app.graph._groups[0];
        group.pos[0] = 0; // the group now holds the whole graph
        group.size[0] = 1100;
        group.size[1] = 500;
      });
      await openGroupMenu(page, "Edit");
      await menuItem(page, "Save group as template").click();
      await page.getByText("Saved the group as template 'Edit'").first().waitFor();
      const template = await (await fetch(`${host.base}/dispatch/templates/Edit`)).json();
      assert.deepEqual(template.summary?.classes ?? template.classes, ["EmptyImage", "ImageInvert", "SaveImage"]);

      // A MODEL link across the group's edge: refused before anything runs, saying why.
      await loadWorkflow(page, "model_across.json");
      await page.evaluate(() => window.app.queuePrompt(0, 1));
      // In our toast (1.5x shows ComfyUI's own details only on demand).
      await page.getByText("Remote group", { exact: true }).first().waitFor({ timeout: 10000 });
      const refusal = /^cannot send MODEL into remote group 'Sample': the link from node 1 .* \(and 2 more: see the node's error\)$/;
      await page.getByText(refusal).first().waitFor({ timeout: 10000 });
      await page.screenshot({ path: join(SHOTS, `remote-group-refused-${version}.png`) });
    }),
  );

  test(`frontend ${version}: a subgraph node set to Run subgraph on ▸ runs on its server`, { skip }, () =>
    withPage(version, async (host, page) => {
      const frames = [];
      page.on("websocket", (socket) => socket.on("framereceived", ({ payload }) => frames.push(String(payload))));
      await openPage(page, host);
      await loadWorkflow(page, "remote_group.json");
      const body = await page.evaluate(() => {
        const graph = window.app.canvas.graph;
        graph.remove(graph._groups[0]); // no group: the subgraph node itself says where
        const made = graph.convertToSubgraph(new Set([graph.getNodeById(2)]));
        const node = made?.node ?? made;
        return [node.pos[0] + node.size[0] / 2, node.pos[1] + node.size[1] / 2];
      });
      const at = await screenPoint(page, body);
      await page.mouse.click(at.x, at.y, { button: "right" });
      await menuItem(page, "Run subgraph on ▸").click();
      await menuItem(page, "Server: gpu-b").click();
      const titles = await page.evaluate(() => window.app.graph.nodes.filter((n) => n.isSubgraphNode?.()).map((n) => n.title));
      assert.equal(titles.length, 1);
      assert.match(titles[0], /\[server: gpu-b\]$/);

      await page.evaluate(() => window.app.queuePrompt(0, 1));
      const executed = await waitForFrame(frames, (m) => m.type === "executed" && m.data.node === "3");
      assert.equal(executed.data.output.images.length, 1);
      const config = await (await fetch(`${host.base}/dispatch/config`)).json();
      const history = await (await fetch(`${config.config.servers["gpu-b"].url}/history`)).json();
      const ran = Object.values(history).map((entry) => Object.values(entry.prompt[2]).map((n) => n.class_type).sort());
      assert.deepEqual(ran, [["ImageInvert", "LoadImage", "PreviewImage"]], "the subgraph ran on gpu-b");
    }),
  );

  test(`frontend ${version}: Queue graph on ▸ sends the whole graph to a server, Alt+Enter again`, { skip }, () =>
    withPage(version, async (host, page) => {
      await openPage(page, host);
      await loadWorkflow(page, "remote_group.json"); // its group is local: the whole graph goes

      const empty = await screenPoint(page, [100, 520]);
      await page.mouse.click(empty.x, empty.y, { button: "right" });
      await menuItem(page, "Queue graph on ▸").click();
      await menuItem(page, "Server: gpu-b").click();
      await page.getByText(/^Done on gpu-b in [\d.]+ s, 1 file\(s\): see the Dispatch tab$/).first().waitFor({ timeout: 20000 });

      await page.mouse.click(empty.x, empty.y); // the canvas has the keyboard
      await page.keyboard.press("Alt+Enter");
      let jobs = [];
      for (let tries = 0; tries < 100 && jobs.length < 2; tries++) {
        const records = await (await fetch(`${host.base}/dispatch/jobs`)).json();
        jobs = records.filter((job) => job.server === "gpu-b" && job.state === "done");
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      assert.equal(jobs.length, 2, "Alt+Enter queued the graph on gpu-b again");
      const config = await (await fetch(`${host.base}/dispatch/config`)).json();
      const history = await (await fetch(`${config.config.servers["gpu-b"].url}/history`)).json();
      const ran = Object.values(history).map((entry) => Object.values(entry.prompt[2]).map((n) => n.class_type).sort().join(","));
      assert.deepEqual([...new Set(ran)], ["EmptyImage,ImageInvert,SaveImage"], "the whole graph ran on gpu-b");

      // And from the Dispatch tab: Run this graph on ▸ gpu-a.
      await page.getByRole("button", { name: TAB, exact: true }).click();
      await page.getByLabel("Run the graph on").selectOption("server:gpu-a");
      await page.locator(".dp-run-graph button").click();
      await page.locator('li', { hasText: "gpu-a" }).filter({ hasText: "done" }).first().waitFor({ timeout: 20000 });
      await page.screenshot({ path: join(SHOTS, `queue-on-${version}.png`) });
    }),
  );
}

/** A fresh host of this frontend and a page on it, closed whatever the test does. */
async function withPage(version, body) {
  const host = await startHost(version);
  const context = await browser().newContext({ viewport: { width: 1400, height: 800 } });
  try {
    await context.route("https://**", (route) => route.abort()); // no internet
    await body(host, await context.newPage());
  } finally {
    await context.close();
    host.child.kill();
  }
}

/** The page of a host, past the first-start tutorial, with the graph's app ready. */
async function openPage(page, host) {
  const stored = await fetch(`${host.base}/api/settings`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ "Comfy.TutorialCompleted": true }),
  });
  assert.equal(stored.status, 200);
  await page.goto(`${host.base}/`);
  await page.getByRole("button", { name: TAB, exact: true }).waitFor({ timeout: 60000 });
  await page.waitForFunction(() => window.app?.graph && window.app?.canvas, null, { timeout: 20000 });
}

async function loadWorkflow(page, name) {
  const workflow = JSON.parse(readFileSync(join(ROOT, "tests", "browser", "workflows", name), "utf8"));
  await page.evaluate(async (data) => {
    await window.app.loadGraphData(data);
    const canvas = window.app.canvas;
    canvas.ds.scale = 1;
    canvas.ds.offset = [0, 0];
    canvas.setDirty(true, true);
  }, workflow);
}

function groupTitles(page) {
  return page.evaluate(() => window.app.graph._groups.map((group) => group.title));
}

/** An entry of the open context menu (closed menus may linger in the page, hidden). */
function menuItem(page, text) {
  return page.locator(".litecontextmenu .litemenu-entry:visible", { hasText: text }).first();
}

/** Where a point of the graph is on the screen. */
function screenPoint(page, point) {
  return page.evaluate(([gx, gy]) => {
    const canvas = window.app.canvas;
    const [x, y] = canvas.ds.convertOffsetToCanvas([gx, gy]);
    const box = canvas.canvas.getBoundingClientRect();
    return { x: box.left + x, y: box.top + y };
  }, point);
}

/** Right-click the middle of the group's title bar: the canvas menu over a group. */
async function openGroupMenu(page, title) {
  const corner = await page.evaluate((wanted) => {
    const group = window.app.graph._groups.find((g) => g.title.startsWith(wanted));
    return [group.pos[0] + group.size[0] / 2, group.pos[1] + 12];
  }, title);
  const at = await screenPoint(page, corner);
  await page.mouse.click(at.x, at.y, { button: "right" });
}

/** The group's menu, then "Run group on ▸" and the choice. */
async function runGroupOn(page, title, choice) {
  await openGroupMenu(page, title);
  await menuItem(page, "Run group on ▸").click();
  await menuItem(page, choice).click();
}

async function waitForFrame(frames, matches, timeout = 20000) {
  const end = Date.now() + timeout;
  while (Date.now() < end) {
    for (const frame of frames) {
      if (!frame.startsWith("{")) continue;
      const message = JSON.parse(frame);
      if (matches(message)) return message;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error("no such frame on the page's /ws");
}
