// ComfyUI's real frontend served by the gateway itself (`serve` with the [frontend] extra),
// over two fake GPU servers: the page loads, its Dispatch tab is there, and a graph queued
// from the page runs on the farm and shows its image. One test per version of
// tests/frontend_host/versions.json, served by tests/frontend_host/gateway.py.
// Run by tests/test_browser.py (FRONTENDS=1.58.1); alone, after
// `python tests/frontend_host/fetch.py`: `node --test tests/browser/gateway_page.test.mjs`.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { SHOTS, TAB, VERSIONS, staticFolder, startServer, useBrowser } from "./frontends.mjs";
const INVERT = {
  1: { class_type: "EmptyImage", inputs: { width: 64, height: 64, batch_size: 1, color: 0xff0000 } },
  2: { class_type: "ImageInvert", inputs: { image: ["1", 0] } },
  3: { class_type: "SaveImage", inputs: { images: ["2", 0], filename_prefix: "page" } },
};

const browser = useBrowser();

/** The gateway with one frontend; resolves with its process and base URL. */
const startGateway = (version) => startServer("gateway.py", version, "gateway");

for (const version of VERSIONS) {
  const absent = !existsSync(join(staticFolder(version), "index.html"));
  const skip = absent && `frontend ${version} not downloaded: python tests/frontend_host/fetch.py`;

  test(`frontend ${version} from the gateway: a queued graph runs on the farm`, { skip }, async () => {
    const gateway = await startGateway(version);
    const context = await browser().newContext({ viewport: { width: 1400, height: 900 } });
    try {
      await context.route("https://**", (route) => route.abort()); // no internet
      const page = await context.newPage();
      const failed = [];
      page.on("response", (response) => {
        const url = new URL(response.url());
        const fine = response.status() < 400 || /^\/(api\/)?(userdata|jobs|global_subgraphs)|user\.css$/.test(url.pathname);
        if (url.origin === gateway.base && !fine) failed.push(`${response.status()} ${url.pathname}`);
      });

      // The user's settings live in the gateway's own folder: kept, and read back.
      const stored = await fetch(`${gateway.base}/api/settings`, {
        method: "POST",
        body: JSON.stringify({ "Comfy.TutorialCompleted": true }),
      });
      assert.equal(stored.status, 200);
      const settings = await (await fetch(`${gateway.base}/api/settings`)).json();
      assert.equal(settings["Comfy.TutorialCompleted"], true);

      await page.goto(`${gateway.base}/`);
      await page.getByRole("button", { name: TAB, exact: true }).waitFor({ timeout: 60000 });

      const viewed = page.waitForResponse(
        (r) => r.url().includes("/view?") && r.url().includes("subfolder=%40gpu-") && r.status() === 200,
        { timeout: 30000 },
      );
      await page.evaluate(async (graph) => {
        await window.app.loadApiJson(graph, "invert.json");
        await window.app.queuePrompt(0, 1);
      }, INVERT);
      const image = await viewed;
      assert.equal(image.headers()["content-type"], "image/png");
      assert.equal(image.headers()["x-content-type-options"], "nosniff");
      const outputs = await page.evaluate(() => JSON.stringify(window.app.nodeOutputs));
      assert.match(outputs, /"subfolder":"@gpu-[ab]"/);
      await page.waitForFunction(() =>
        [...document.querySelectorAll("img")].some((img) => img.src.includes("/view?") && img.complete && img.naturalWidth === 64),
      ).catch(() => {}); // drawn on the canvas by older pages: the response above is the proof
      await page.screenshot({ path: join(SHOTS, `gateway-page-${version}.png`) });

      const history = await (await fetch(`${gateway.base}/api/history`)).json();
      const entries = Object.values(history);
      assert.equal(entries.length, 1);
      assert.equal(entries[0].status.status_str, "success");
      assert.deepEqual(failed, [], "requests the gateway failed");
    } finally {
      await context.close();
      gateway.child.kill();
    }
  });
}
