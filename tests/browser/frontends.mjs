// What the browser tests of ComfyUI's real frontend share: where things are, one Chromium
// for a file's tests, and a Python host serving a frontend version (serve.py, gateway.py).

import { spawn } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { delimiter, dirname, join } from "node:path";
import { after, before } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const SHOTS = process.env.SCREENSHOTS || join(ROOT, "test-output", "browser");
export const HOST = join(ROOT, "tests", "frontend_host");
export const VERSIONS = process.env.FRONTENDS
  ? process.env.FRONTENDS.split(",")
  : JSON.parse(readFileSync(join(HOST, "versions.json"), "utf8"));
export const TAB = "Dispatch: GPU servers, routes, templates and jobs"; // the tab button's name
const PYTHON = process.env.PYTHON || "python3";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

/** One headless Chromium for the file's tests: `browser()` gives it once they run. */
export function useBrowser() {
  let launched;
  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    launched = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    });
  });
  after(async () => {
    if (launched) await launched.close();
  });
  return () => launched;
}

export function staticFolder(version) {
  return join(ROOT, "test-output", "frontend", version, "comfyui_frontend_package", "static");
}

/**
 * Start a host script of tests/frontend_host serving one frontend version; resolves with
 * its process and base URL (no trailing slash) once it prints `<banner> on http://…/ `.
 */
export function startServer(script, version, banner) {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, PYTHONPATH: [ROOT, process.env.PYTHONPATH].filter(Boolean).join(delimiter) };
    const args = [join(HOST, script), "--frontend", staticFolder(version)];
    const child = spawn(PYTHON, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
    let seen = "";
    const timer = setTimeout(() => reject(new Error(`no URL from ${script}:\n${seen}`)), 20000);
    const read = (chunk) => {
      seen += chunk;
      const match = seen.match(new RegExp(`${banner} on (http:\\/\\/\\S+?)\\/ `));
      if (match) {
        clearTimeout(timer);
        resolve({ child, base: match[1] });
      }
    };
    child.stdout.on("data", read);
    child.stderr.on("data", read);
    child.on("exit", (code) => reject(new Error(`${script} exited (${code}):\n${seen}`)));
  });
}
