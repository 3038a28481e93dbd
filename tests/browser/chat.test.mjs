// The web client, end to end: real server, real browser.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { guestPage, launchBrowser, startServer } from "./harness.mjs";

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function openRoom(name, room) {
  const page = await guestPage(browser, server.url, name);
  await page.goto(`${server.url}/chat/${room}/`);
  await page.getByTestId("status").and(page.locator('[data-state="online"]')).waitFor();
  return page;
}

async function send(page, text) {
  const input = page.getByTestId("message-input");
  await input.fill(text);
  await input.press("Enter");
}

test("the index refuses a bad room name with a clear message and opens a good one", async () => {
  const page = await guestPage(browser, server.url, "ana");
  await page.goto(server.url + "/");
  await page.getByTestId("room-input").fill("bad name!");
  await page.getByTestId("room-submit").click();
  const error = page.getByTestId("room-error");
  await error.waitFor();
  assert.match(await error.textContent(), /letters, digits/);
  assert.equal(new URL(page.url()).pathname, "/");
  await page.getByTestId("room-input").fill("lobby");
  await page.getByTestId("room-submit").click();
  await page.waitForURL(/\/chat\/lobby\/$/);
  await page.context().close();
});

test("two people in a room see each message once, with the same seq and the sender", async () => {
  const ana = await openRoom("ana", "duo");
  const bruno = await openRoom("bruno", "duo");
  await send(ana, "hello bruno");
  for (const page of [ana, bruno]) {
    const msg = page.getByTestId("message").filter({ hasText: "hello bruno" });
    await msg.waitFor();
    assert.equal(await msg.count(), 1);
    assert.equal(await msg.getAttribute("data-seq"), "1");
    assert.equal(await msg.locator(".sender").textContent(), "ana");
  }
  // The sender's pending copy became the stored one: no duplicate, no leftover.
  assert.equal(await ana.getByTestId("pending-message").count(), 0);
  assert.equal(await ana.getByTestId("message-input").inputValue(), "");
  await ana.context().close();
  await bruno.context().close();
});

test("a picture sent in a room is shown to the others, once, scaled into the message", async () => {
  // A real 1x1 PNG: the other side must decode it, not just receive a link.
  const png = Buffer.from(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==",
    "base64",
  );
  const ana = await openRoom("ana", "pets");
  const bruno = await openRoom("bruno", "pets");
  await ana.getByTestId("message-input").fill("o Rex");
  await ana.getByTestId("file-input").setInputFiles({ name: "rex.png", mimeType: "image/png", buffer: png });
  const shown = bruno.getByTestId("message").filter({ hasText: "o Rex" });
  await shown.waitFor();
  assert.equal(await shown.count(), 1);
  const img = shown.getByTestId("attachment-image");
  await img.waitFor();
  assert.equal(await img.getAttribute("alt"), "rex.png");
  await bruno.waitForFunction(
    () => {
      const i = document.querySelector('[data-testid="attachment-image"]');
      return i && i.complete && i.naturalWidth === 1;
    },
    null,
    { timeout: 5000 },
  );
  // The sender's copy is the stored one, with the picture, and no pending leftover.
  await ana.getByTestId("message").filter({ hasText: "o Rex" }).getByTestId("attachment-image").waitFor();
  assert.equal(await ana.getByTestId("pending-message").count(), 0);
  // A file the server refuses is said so, and nothing is sent.
  await ana.getByTestId("file-input").setInputFiles({ name: "x.exe", mimeType: "application/octet-stream", buffer: Buffer.from("MZ\x90\x00\x03\x00\x00\x00\x04\x00") });
  await ana.getByTestId("notice").waitFor();
  assert.match(await ana.getByTestId("notice").textContent(), /cannot be attached/);
  await ana.context().close();
  await bruno.context().close();
});

test("the server restarts mid-conversation: both pages reconnect and every message shows once", async () => {
  const dataDir = mkdtempSync(join(tmpdir(), "chat-restart-"));
  let node = await startServer({ dataDir });
  const bind = new URL(node.url).host;
  const open = async (name) => {
    const page = await guestPage(browser, node.url, name);
    await page.goto(`${node.url}/chat/restart/`);
    await page.getByTestId("status").and(page.locator('[data-state="online"]')).waitFor();
    return page;
  };
  const ana = await open("ana");
  const bruno = await open("bruno");
  await send(ana, "before the restart");
  await bruno.getByTestId("message").filter({ hasText: "before the restart" }).waitFor();

  await node.stop();
  for (const page of [ana, bruno]) {
    await page.getByTestId("status").and(page.locator('[data-state="online"]')).waitFor({ state: "detached" });
  }
  node = await startServer({ dataDir, bind });
  // Ana is back first and writes; Bruno, whenever he is back, gets what he missed.
  await ana.getByTestId("status").and(ana.locator('[data-state="online"]')).waitFor({ timeout: 15_000 });
  await send(ana, "while bruno was away");
  await send(ana, "and one more");
  await bruno.getByTestId("status").and(bruno.locator('[data-state="online"]')).waitFor({ timeout: 15_000 });
  for (const page of [ana, bruno]) {
    for (const text of ["before the restart", "while bruno was away", "and one more"]) {
      const msg = page.getByTestId("message").filter({ hasText: text });
      await msg.waitFor();
      assert.equal(await msg.count(), 1, `${text} once`);
    }
    const seqs = await page.getByTestId("message").evaluateAll((els) => els.map((e) => Number(e.dataset.seq)));
    assert.deepEqual(seqs, [1, 2, 3], "in order, no gap, no duplicate");
  }
  await ana.context().close();
  await bruno.context().close();
  await node.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

test("the connection status says offline without a network and comes back online by itself", async () => {
  const ana = await openRoom("ana", "flaky");
  const bruno = await openRoom("bruno", "flaky");
  const status = (page, state) => page.getByTestId("status").and(page.locator(`[data-state="${state}"]`));
  await ana.context().setOffline(true);
  await status(ana, "offline").waitFor();
  await send(bruno, "while ana was offline");
  await ana.context().setOffline(false);
  await status(ana, "online").waitFor({ timeout: 15_000 });
  const missed = ana.getByTestId("message").filter({ hasText: "while ana was offline" });
  await missed.waitFor();
  assert.equal(await missed.count(), 1);
  await ana.context().close();
  await bruno.context().close();
});

test("while the tab is hidden, new messages count in the title and chime when sound is on", async () => {
  const ana = await openRoom("ana", "chimes");
  const bruno = await openRoom("bruno", "chimes");
  const toggle = ana.getByTestId("sound-toggle");
  assert.equal(await toggle.getAttribute("aria-pressed"), "false", "off by default in a public room");
  await toggle.click();
  assert.equal(await toggle.getAttribute("aria-pressed"), "true");
  const setHidden = (hidden) =>
    ana.evaluate((h) => {
      Object.defineProperty(document, "hidden", { value: h, configurable: true });
      Object.defineProperty(document, "visibilityState", { value: h ? "hidden" : "visible", configurable: true });
      document.dispatchEvent(new Event("visibilitychange"));
    }, hidden);
  await setHidden(true);
  await send(bruno, "one");
  await send(bruno, "two");
  await ana.waitForFunction(() => document.title.startsWith("(2) #chimes"));
  assert.equal(await ana.evaluate(() => document.body.dataset.chimes), "2");
  // Her own messages do not count; coming back clears the count.
  await setHidden(false);
  await ana.waitForFunction(() => document.title === "#chimes · Chat");
  // The choice is remembered for the room.
  await ana.reload();
  assert.equal(await ana.getByTestId("sound-toggle").getAttribute("aria-pressed"), "true");
  await ana.context().close();
  await bruno.context().close();
});

test("with WebSocket blocked the page falls back to long-poll, then back to the socket, losing and repeating nothing", async () => {
  const ana = await guestPage(browser, server.url, "ana");
  let blocked = true;
  // A proxy that refuses WebSocket: every socket of this page closes before its first frame.
  await ana.routeWebSocket(/\/ws\//, (ws) => (blocked ? ws.close() : ws.connectToServer()));
  await ana.goto(`${server.url}/chat/blocked/`);
  const bruno = await openRoom("bruno", "blocked");
  const status = ana.getByTestId("status");
  await status.and(ana.locator('[data-transport="poll"][data-state="online"]')).waitFor({ timeout: 15_000 });

  await send(ana, "sent over http");
  await send(bruno, "heard over long-poll");
  await bruno.getByTestId("message").filter({ hasText: "sent over http" }).waitFor();
  await ana.getByTestId("message").filter({ hasText: "heard over long-poll" }).waitFor();

  // The proxy lets WebSocket through again: the page moves back to its socket.
  blocked = false;
  await status.and(ana.locator('[data-transport="ws"][data-state="online"]')).waitFor({ timeout: 15_000 });
  await send(ana, "back on the socket");
  await send(bruno, "and live again");
  for (const page of [ana, bruno]) {
    for (const text of ["sent over http", "heard over long-poll", "back on the socket", "and live again"]) {
      const msg = page.getByTestId("message").filter({ hasText: text });
      await msg.waitFor();
      assert.equal(await msg.count(), 1, `${text} once`);
    }
    const seqs = await page.getByTestId("message").evaluateAll((els) => els.map((e) => Number(e.dataset.seq)));
    assert.deepEqual(seqs, [1, 2, 3, 4], "in order, no gap, no duplicate");
  }
  assert.equal(await ana.getByTestId("pending-message").count(), 0);
  await ana.context().close();
  await bruno.context().close();
});

test("messages group by sender and minute, under the date they were sent", async () => {
  const ana = await openRoom("ana", "grouped");
  const bruno = await openRoom("bruno", "grouped");
  await send(ana, "first");
  await bruno.getByTestId("message").filter({ hasText: "first" }).waitFor();
  await send(ana, "second");
  await bruno.getByTestId("message").filter({ hasText: "second" }).waitFor();
  await send(bruno, "third");
  const third = bruno.getByTestId("message").filter({ hasText: "third" });
  await third.waitFor();
  const classes = await bruno
    .getByTestId("message")
    .evaluateAll((els) => els.map((e) => [e.classList.contains("continued"), !!e.dataset.day]));
  // The first message opens the day; ana's second follows hers; bruno's starts a new group.
  // (A minute boundary between the first two would split them: allowed, not required.)
  assert.deepEqual(classes[0], [false, true]);
  assert.equal(classes[2][0], false, "another sender starts a group");
  assert.equal(classes[2][1], false, "same day: no second date line");
  const secondContinues = classes[1][0];
  const sameMinute = await bruno.getByTestId("message").evaluateAll(
    (els) => Math.floor(new Date(els[0].dataset.sentAt) / 60000) === Math.floor(new Date(els[1].dataset.sentAt) / 60000),
  );
  assert.equal(secondContinues, sameMinute, "ana's second joins her first exactly when in the same minute");
  await ana.context().close();
  await bruno.context().close();
});

test("who is online: a column on a desktop, a panel on a phone; the header button and Esc open and close it", async () => {
  const ana = await openRoom("ana", "panel");
  const bruno = await openRoom("bruno", "panel");
  const panel = ana.getByTestId("online");
  await ana.getByTestId("online-count").and(ana.locator(":text('2')")).waitFor();
  assert.ok(await panel.isVisible(), "open beside the messages at 1280 px");
  const box = await panel.boundingBox();
  const messages = await ana.getByTestId("messages").boundingBox();
  assert.ok(box.x >= messages.x + messages.width - 1, "a column to the right of the messages, not above them");
  await ana.keyboard.press("Escape");
  await panel.waitFor({ state: "hidden" });
  assert.equal(await ana.getByTestId("online-toggle").getAttribute("aria-expanded"), "false");
  await ana.getByTestId("online-toggle").click();
  await panel.waitFor({ state: "visible" });

  // A phone: closed until asked for, then over the messages; Esc closes it again.
  await bruno.setViewportSize({ width: 360, height: 740 });
  await bruno.reload();
  await bruno.getByTestId("status").and(bruno.locator('[data-state="online"]')).waitFor();
  assert.equal(await bruno.getByTestId("online").isVisible(), false);
  await bruno.getByTestId("online-toggle").click();
  await bruno.getByTestId("online").waitFor({ state: "visible" });
  await bruno.keyboard.press("Escape");
  await bruno.getByTestId("online").waitFor({ state: "hidden" });
  await ana.context().close();
  await bruno.context().close();
});

test("the sidebar lists the rooms visited lately beside the chat; a phone shows the chat alone", async () => {
  const ana = await guestPage(browser, server.url, "ana");
  for (const room of ["alpha", "beta"]) {
    await ana.goto(`${server.url}/chat/${room}/`);
    await ana.getByTestId("status").and(ana.locator('[data-state="online"]')).waitFor();
  }
  const links = ana.getByTestId("recent-rooms").locator("a");
  assert.deepEqual(await links.allTextContents(), ["#beta", "#alpha"], "most recent first");
  assert.equal(await links.first().getAttribute("aria-current"), "page");
  assert.ok(await ana.getByTestId("sidebar").isVisible());
  await links.nth(1).click();
  await ana.waitForURL(/\/chat\/alpha\/$/);
  await ana.setViewportSize({ width: 360, height: 740 });
  assert.equal(await ana.getByTestId("sidebar").isVisible(), false, "two screens on a phone");
  await ana.context().close();
});

test("scrolling up reads older messages in, keeping the view where it was", async () => {
  // 70 messages: the page opens on the latest 50.
  for (let i = 1; i <= 70; i++) {
    for (;;) {
      const res = await fetch(`${server.url}/api/rooms/longread/messages`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ body: `note ${i}`, name: "archivist", client_id: `n${i}` }),
      });
      if (res.status !== 429) {
        assert.ok(res.ok, `post ${i}: ${res.status}`);
        break;
      }
      await new Promise((ok) => setTimeout(ok, 100)); // over the post rate: back off
    }
  }
  const ana = await openRoom("ana", "longread");
  const messages = ana.getByTestId("message");
  await ana.waitForFunction(() => document.querySelectorAll('[data-testid="message"]').length === 50);
  assert.equal(await messages.first().textContent().then((t) => t.includes("note 21")), true);
  const anchor = ana.getByTestId("message").filter({ hasText: /note 21$/ });
  const listTop = (await ana.getByTestId("messages").boundingBox()).y;
  await ana.getByTestId("messages").evaluate((el) => {
    el.scrollTop = 0;
    el.dispatchEvent(new Event("scroll"));
  });
  await ana.waitForFunction(() => document.querySelectorAll('[data-testid="message"]').length === 70);
  assert.ok(await ana.getByTestId("load-older").isHidden(), "nothing older left");
  const seqs = await messages.evaluateAll((els) => els.map((e) => Number(e.dataset.seq)));
  assert.deepEqual(seqs, Array.from({ length: 70 }, (_, i) => i + 1));
  // Note 21 was at the top when the reader scrolled up; it stays there, the 20 older notes
  // above it (without that, it would be pushed down by their whole height).
  const after = (await anchor.boundingBox()).y;
  assert.ok(after >= listTop - 5 && after - listTop < 120, `note 21 stays at the top (${listTop} -> ${after})`);
  await ana.context().close();
});

test("messages, display names and file names are text, never HTML", async () => {
  const evilName = '<img src=x onerror="window.__xss=2">';
  const ana = await openRoom(evilName, "xss");
  const bruno = await openRoom("bruno", "xss");
  const evil = '<img src=x onerror="window.__xss=1"><b>bold</b>';
  await send(ana, evil);
  const msg = bruno.getByTestId("message").filter({ hasText: "<b>bold</b>" });
  await msg.waitFor();
  assert.equal(await msg.locator(".body").textContent(), evil);
  assert.equal(await msg.locator(".sender").textContent(), evilName);
  await bruno.locator("#online-list li").filter({ hasText: evilName }).waitFor();
  // A file whose name is markup: a download link that shows the name as text.
  const fileName = '<img src=x onerror="window.__xss=3">.txt';
  await ana.getByTestId("file-input").setInputFiles({ name: fileName, mimeType: "text/plain", buffer: Buffer.from("notes\n") });
  const link = bruno.getByTestId("attachment-link");
  await link.waitFor();
  assert.ok((await link.textContent()).startsWith(fileName), await link.textContent());
  for (const page of [ana, bruno]) {
    const markup = page.locator("[data-testid=messages] b, [data-testid=messages] img, #online-list img, #typing img");
    assert.equal(await markup.count(), 0);
    assert.equal(await page.evaluate(() => window.__xss), undefined);
  }
  await ana.context().close();
  await bruno.context().close();
});

test("a page opened later shows the history in order", async () => {
  const ana = await openRoom("ana", "history");
  for (const text of ["first", "second", "third"]) {
    await send(ana, text);
    await ana.getByTestId("message").filter({ hasText: text }).waitFor();
  }
  const late = await openRoom("carol", "history");
  const bodies = late.getByTestId("message").locator(".body");
  await bodies.nth(2).waitFor();
  assert.deepEqual(await bodies.allTextContents(), ["first", "second", "third"]);
  const seqs = await late.getByTestId("message").evaluateAll((els) => els.map((e) => e.dataset.seq));
  assert.deepEqual(seqs, ["1", "2", "3"]);
  await ana.context().close();
  await late.context().close();
});

test("typing shows an indicator to the others", async () => {
  const ana = await openRoom("ana", "typing");
  const bruno = await openRoom("bruno", "typing");
  await bruno.getByTestId("message-input").pressSequentially("hel");
  await ana.getByTestId("typing").filter({ hasText: "bruno is typing" }).waitFor();
  assert.equal(await bruno.getByTestId("typing").textContent(), "", "no indicator for oneself");
  await ana.context().close();
  await bruno.context().close();
});

test("two guests with one name are two people: both online, and one leaving leaves the other", async () => {
  // Two browsers (two contexts, two chat_guest cookies), both called ana.
  const one = await openRoom("ana", "twins");
  const two = await openRoom("ana", "twins");
  const watcher = await openRoom("watcher", "twins");
  const anasOnline = (n) =>
    watcher.waitForFunction(
      (n) => [...document.querySelectorAll("#online-list li")].filter((li) => li.textContent === "ana").length === n,
      n,
      { timeout: 10000 },
    );
  await anasOnline(2);
  await one.context().close();
  await anasOnline(1);
  await two.context().close();
  await anasOnline(0);
  await watcher.context().close();
});

test("an invalid room URL answers 400 with the reason", async () => {
  const page = await guestPage(browser, server.url, "ana");
  const res = await page.goto(`${server.url}/chat/no%20spaces/`);
  assert.equal(res.status(), 400);
  assert.match(await page.getByTestId("error-message").textContent(), /letters/);
  await page.context().close();
});
