// Starts the real chat-server binary on a free port with a fresh data directory and launches
// Debian's Chromium through playwright-core.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const ROOT = resolve(import.meta.dirname, "..", "..");

/// Starts a server. `args` are extra `serve` flags (`["--compat", "tutorials"]`); `dataDir`
/// shares a data directory (and so the SQLite file and the secret key) between servers; `env`
/// adds environment variables; `bind` is the address (a free port by default; a stopped
/// server's, to restart it where its pages reconnect).
export async function startServer({ args = [], dataDir: sharedDir, env: extraEnv = {}, bind = "127.0.0.1:0" } = {}) {
  const bin = process.env.CHAT_SERVER_BIN || join(ROOT, "target", "debug", "chat-server");
  const dataDir = sharedDir || mkdtempSync(join(tmpdir(), "chat-browser-"));
  const env = { ...process.env, CHAT_LOG: "warn" };
  delete env.DATABASE_URL;
  delete env.REDIS_URL;
  delete env.CHAT_COMPAT;
  Object.assign(env, extraEnv);
  const child = spawn(bin, ["serve", "--bind", bind, "--data-dir", dataDir, ...args], {
    env,
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error("chat-server did not start in 20 s")), 20_000);
    child.once("exit", (code) => fail(new Error(`chat-server exited with ${code}`)));
    createInterface({ input: child.stdout }).on("line", (line) => {
      const m = line.match(/listening on (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        ok(m[1]);
      }
    });
  });
  return {
    url,
    dataDir,
    /// Creates a user with `chat-server user add` on this server's data directory.
    addUser(username, name, role, password) {
      const r = spawnSync(
        bin,
        ["user", "add", "--username", username, "--name", name, "--role", role, "--data-dir", dataDir],
        { input: password + "\n", env, encoding: "utf8" },
      );
      if (r.status !== 0) throw new Error("user add failed: " + r.stderr);
      return Number(r.stdout.match(/\(id (\d+)/)[1]);
    },
    async stop() {
      child.kill("SIGTERM");
      await new Promise((ok) => (child.exitCode !== null ? ok() : child.once("exit", ok)));
      if (!sharedDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/// A page for a guest whose name is already chosen.
export async function guestPage(browser, url, name) {
  const context = await browser.newContext();
  await context.addInitScript((n) => localStorage.setItem("chat.name", n), name);
  const page = await context.newPage();
  page.on("pageerror", (e) => {
    throw e;
  });
  return page;
}

/// A page logged in as `username` (through the login form), on the index; `viewport` sizes it.
export async function loggedInPage(browser, url, username, password, viewport) {
  const context = await browser.newContext(viewport ? { viewport } : {});
  const page = await context.newPage();
  page.on("pageerror", (e) => {
    throw e;
  });
  await page.goto(url + "/login");
  await page.getByTestId("login-username").fill(username);
  await page.getByTestId("login-password").fill(password);
  await page.getByTestId("login-submit").click();
  await page.getByTestId("whoami").waitFor();
  return page;
}
