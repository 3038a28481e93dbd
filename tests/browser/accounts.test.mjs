// Accounts in the browser: log in, contacts with unread badges, a private conversation.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { launchBrowser, loggedInPage, startServer } from "./harness.mjs";

const PW = "correct horse battery";
let server;
let browser;
let ana;
let bruno;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  ana = server.addUser("ana", "Ana", "tutor", PW);
  bruno = server.addUser("bruno", "Bruno", "vet", PW);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/// Polls `check` until it holds (a condition on the server, not a sleep), failing after 10 s.
async function eventually(check, what) {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("timed out waiting until " + what);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function loggedIn(username) {
  return loggedInPage(browser, server.url, username, PW);
}

test("a wrong password is refused with a message and no session", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(server.url + "/login");
  await page.getByTestId("login-username").fill("ana");
  await page.getByTestId("login-password").fill("not the password");
  await page.getByTestId("login-submit").click();
  const error = page.getByTestId("login-error");
  await error.waitFor();
  assert.match(await error.textContent(), /wrong username or password/);
  assert.equal((await context.cookies()).length, 0);
  await context.close();
});

test("two users chat privately; unread badges follow read receipts", async () => {
  const a = await loggedIn("ana");
  assert.match(await a.getByTestId("whoami").textContent(), /Ana \(tutor\)/);
  const contact = a.getByTestId("contact").filter({ hasText: "Bruno (vet)" });
  await contact.waitFor();
  assert.equal(await contact.getByTestId("unread").count(), 0);

  // Bruno writes to Ana from his side of the pair room.
  const b = await loggedIn("bruno");
  await b.goto(`${server.url}/dm/${ana}/`);
  await b.getByTestId("status").and(b.locator('[data-state="online"]')).waitFor();
  assert.match(await b.getByTestId("room-title").textContent(), /Ana \(tutor\)/);
  const input = b.getByTestId("message-input");
  await input.fill("Bring Rex at 3pm");
  await input.press("Enter");
  await b.getByTestId("message").filter({ hasText: "Bring Rex" }).waitFor();
  // Stored, not read yet: one tick on Bruno's own message.
  const sent = b.getByTestId("message").filter({ hasText: "Bring Rex" });
  assert.equal(await sent.getByTestId("ticks").textContent(), "\u2713");
  // Bruno's sidebar lists his conversation with Ana as the current one, with no badge.
  const own = b.getByTestId("sidebar-contact").filter({ hasText: "Ana (tutor)" });
  await own.waitFor();
  assert.equal(await own.locator("a").getAttribute("aria-current"), "page");
  assert.equal(await own.getByTestId("sidebar-unread").count(), 0);

  // Ana sees one unread from Bruno, opens the conversation, reads it.
  await a.reload();
  const badge = a.getByTestId("contact").filter({ hasText: "Bruno" }).getByTestId("unread");
  await badge.waitFor();
  assert.equal(await badge.textContent(), "1");
  await a.getByTestId("contact").filter({ hasText: "Bruno" }).locator("a").click();
  await a.waitForURL(new RegExp(`/dm/${bruno}/$`));
  const msg = a.getByTestId("message").filter({ hasText: "Bring Rex at 3pm" });
  await msg.waitFor();
  assert.equal(await msg.locator(".role").textContent(), "vet");
  assert.equal(await msg.locator(".sender").textContent(), "Bruno");

  // Bruno, still on the page, sees his message read: two ticks.
  await b.waitForFunction(() => {
    const m = [...document.querySelectorAll('[data-testid="message"]')].find((e) => e.textContent.includes("Bring Rex"));
    return m && m.dataset.read === "true";
  });
  assert.equal(await sent.getByTestId("ticks").textContent(), "\u2713\u2713");

  // The read receipt clears the badge.
  await eventually(async () => {
    const counts = await a.evaluate(async () => (await fetch("/api/unread")).json());
    return Object.values(counts).length > 0 && Object.values(counts).every((n) => n === 0);
  }, "the read receipt clears the unread count");
  await a.goto(server.url + "/");
  await a.getByTestId("contact").filter({ hasText: "Bruno" }).waitFor();
  assert.equal(await a.getByTestId("unread").count(), 0);

  // Logging out ends the session.
  await a.getByTestId("logout").click();
  await a.getByTestId("login-link").waitFor();
  const me = await a.evaluate(async () => (await fetch("/api/me")).status);
  assert.equal(me, 401);
  await a.context().close();
  await b.context().close();
});

test("contacts are live: online dots and badges change without a reload, and read ticks survive one", async () => {
  const dora = server.addUser("dora", "Dora", "tutor", PW);
  const eli = server.addUser("eli", "Eli", "vet", PW);
  const d = await loggedIn("dora");
  const eliContact = d.getByTestId("contact").filter({ hasText: "Eli (vet)" });
  await eliContact.and(d.locator('[data-online="false"]')).waitFor();

  // Eli opens any page: Dora's list shows him online, without a reload.
  const e = await loggedIn("eli");
  await eliContact.and(d.locator('[data-online="true"]')).waitFor();

  // Eli writes: Dora's badge appears where she is.
  await e.goto(`${server.url}/dm/${dora}/`);
  await e.getByTestId("status").and(e.locator('[data-state="online"]')).waitFor();
  await e.getByTestId("message-input").fill("Is Rex eating?");
  await e.getByTestId("message-input").press("Enter");
  const sent = e.getByTestId("message").filter({ hasText: "Is Rex eating?" });
  await sent.waitFor();
  const badge = eliContact.getByTestId("unread");
  await badge.waitFor();
  assert.equal(await badge.textContent(), "1");

  // Dora reads it; Eli sees two ticks live, and again after a reload (the join says how far
  // Dora has read: she sends no new receipt meanwhile).
  await eliContact.locator("a").click();
  await d.waitForURL(new RegExp(`/dm/${eli}/$`));
  await d.getByTestId("message").filter({ hasText: "Is Rex eating?" }).waitFor();
  await sent.and(e.locator('[data-read="true"]')).waitFor();
  await e.reload();
  await sent.waitFor();
  await sent.and(e.locator('[data-read="true"]')).waitFor();
  assert.equal(await sent.getByTestId("ticks").textContent(), "\u2713\u2713");

  // Eli leaves: Dora's sidebar shows him offline.
  const inSidebar = d.getByTestId("sidebar-contact").filter({ hasText: "Eli (vet)" });
  await inSidebar.and(d.locator('[data-online="true"]')).waitFor();
  await e.context().close();
  await inSidebar.and(d.locator('[data-online="false"]')).waitFor();
  await d.context().close();
});

test("on a phone the conversations and the chat are two screens", async () => {
  server.addUser("fay", "Fay", "tutor", PW);
  const page = await loggedIn("fay");
  await page.setViewportSize({ width: 360, height: 740 });
  const bruno = page.getByTestId("contact").filter({ hasText: "Bruno (vet)" });
  await bruno.waitFor();
  await bruno.locator("a").click();
  await page.getByTestId("message-input").waitFor();
  assert.equal(await page.getByTestId("sidebar").isVisible(), false, "the chat alone");
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no sideways scrolling (${overflow}px too wide)`);
  // The back arrow leads to the list, keyboard only.
  await page.locator("a.back").focus();
  await page.keyboard.press("Enter");
  await page.waitForURL(server.url + "/");
  await bruno.waitFor();
  await page.context().close();
});

test("the pair page sends anonymous visitors to the login page and back", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${server.url}/dm/${bruno}/`);
  await page.waitForURL(/\/login\?next=/);
  await page.getByTestId("login-username").fill("ana");
  await page.getByTestId("login-password").fill(PW);
  await page.getByTestId("login-submit").click();
  await page.waitForURL(new RegExp(`/dm/${bruno}/$`));
  await page.getByTestId("status").and(page.locator('[data-state="online"]')).waitFor();
  await context.close();
});

test("login never follows a next that leaves the site, however it is disguised", async () => {
  for (const next of ["//evil.example/", "/\tevil", "/\t/evil.example/", "/\\evil.example", "/ /evil.example"]) {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${server.url}/login?next=${encodeURIComponent(next)}`);
    assert.equal(await page.locator("#login-next").inputValue(), "/", `next=${JSON.stringify(next)}`);
    await page.getByTestId("login-username").fill("ana");
    await page.getByTestId("login-password").fill(PW);
    await page.getByTestId("login-submit").click();
    await page.getByTestId("whoami").waitFor();
    assert.equal(new URL(page.url()).origin, server.url, `next=${JSON.stringify(next)}`);
    await context.close();
  }
  // The server's own answer to a form post with such a next.
  const res = await fetch(server.url + "/login", {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", origin: server.url },
    body: `username=ana&password=${encodeURIComponent(PW)}&next=${encodeURIComponent("/\t/evil.example/")}`,
  });
  assert.equal(res.status, 303);
  assert.equal(res.headers.get("location"), "/");
});

