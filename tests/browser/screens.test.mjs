// The web client's layout at a desktop size (1280 × 800) and a phone size (360 × 740), with a
// lived-in scene: a logged-in user with conversations, a busy public room, a picture. Every run
// saves the screenshots under target/screenshots/ for people to look at, and checks what makes
// a layout usable: the sidebar beside the chat on a desktop, the chat alone and nothing wider
// than the screen on a phone, the message box in view.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { launchBrowser, loggedInPage, startServer } from "./harness.mjs";

const PW = "correct horse battery";
const SHOTS = resolve(import.meta.dirname, "..", "..", "target", "screenshots");
const SIZES = {
  desktop: { width: 1280, height: 800 },
  phone: { width: 360, height: 740 },
};
let server;
let browser;
let ana;
let bruno;

async function post(room, body, who) {
  const res = await fetch(`${server.url}/api/rooms/${room}/messages`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ body, name: who }),
  });
  assert.equal(res.status, 201, await res.text());
}

function loggedIn(username, size) {
  return loggedInPage(browser, server.url, username, PW, SIZES[size]);
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  server = await startServer();
  browser = await launchBrowser();
  ana = server.addUser("ana", "Ana Souza", "tutor", PW);
  bruno = server.addUser("bruno", "Dr. Bruno Lima", "vet", PW);
  server.addUser("carla", "Dr. Carla Reis", "vet", PW);
  await post("lobby", "Good morning! Anyone around?", "marta");
  await post("lobby", "Morning!", "joão");
  await post("lobby", "Does anyone know a vet open on Sundays?", "marta");
  await post("lobby", "The clinic on Rua Augusta is, until 2pm.", "lucas");
  await post("lobby", "Thanks!", "marta");
  // Bruno writes to Ana and sends a picture (drawn here: no image file in the repository).
  const b = await loggedIn("bruno", "desktop");
  await b.goto(`${server.url}/dm/${ana}/`);
  await b.getByTestId("status").and(b.locator('[data-state="online"]')).waitFor();
  await b.getByTestId("message-input").fill("Hi Ana, Rex's results are in. Everything looks fine.");
  await b.getByTestId("message-input").press("Enter");
  await b.getByTestId("message").first().waitFor();
  const uploaded = await b.evaluate(async (room) => {
    const c = document.createElement("canvas");
    c.width = 480;
    c.height = 320;
    const g = c.getContext("2d");
    const sky = g.createLinearGradient(0, 0, 0, 320);
    sky.addColorStop(0, "#93c5fd");
    sky.addColorStop(1, "#fef3c7");
    g.fillStyle = sky;
    g.fillRect(0, 0, 480, 320);
    g.fillStyle = "#92400e";
    g.beginPath();
    g.ellipse(240, 220, 110, 60, 0, 0, Math.PI * 2);
    g.arc(330, 150, 50, 0, Math.PI * 2);
    g.fill();
    const png = await new Promise((ok) => c.toBlob(ok, "image/png"));
    const res = await fetch(`/api/rooms/${room}/attachments?name=rex-xray.png`, { method: "POST", body: png });
    if (res.status !== 201) return res.status;
    const file = await res.json();
    const sent = await fetch(`/api/rooms/${room}/messages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ body: "Here is the X-ray.", attachment: file.id }),
    });
    return sent.status;
  }, `dm_${Math.min(ana, bruno)}_${Math.max(ana, bruno)}`);
  assert.equal(uploaded, 201);
  await b.close();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, name + ".png") });
}

/// Nothing is wider than the screen, and the message box is fully in view.
async function fits(page, size) {
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `${size}: ${overflow}px wider than the screen`);
  const box = await page.getByTestId("message-input").boundingBox();
  assert.ok(box && box.y + box.height <= SIZES[size].height, `${size}: the message box is below the fold`);
}

for (const size of Object.keys(SIZES)) {
  test(`${size}: the index, a public room and a conversation`, async () => {
    const page = await loggedIn("ana", size);
    // (The first size shows Bruno's messages as unread; the next, after Ana read them, not.)
    await page.getByTestId("contact").filter({ hasText: "Bruno" }).waitFor();
    await shot(page, `${size}-index`);

    await page.goto(`${server.url}/chat/lobby/`);
    await page.getByTestId("status").and(page.locator('[data-state="online"]')).waitFor();
    await page.getByTestId("message").filter({ hasText: "Thanks!" }).waitFor();
    await page.getByTestId("message-input").fill(`Good to know (from the ${size}).`);
    await page.getByTestId("message-input").press("Enter");
    // The stored message (the echo replaces the pending one, so wait for it by its test id).
    const own = page.getByTestId("message").and(page.locator(".own")).filter({ hasText: `from the ${size}` });
    await own.waitFor();
    const ownBox = await own.boundingBox();
    const listBox = await page.getByTestId("messages").boundingBox();
    assert.ok(ownBox.x + ownBox.width > listBox.x + listBox.width - 40, "one's own messages sit on the right");
    await fits(page, size);
    const sidebar = await page.getByTestId("sidebar").isVisible();
    if (size === "desktop") {
      assert.ok(sidebar, "the sidebar is beside the chat");
      const list = await page.getByTestId("messages").boundingBox();
      assert.ok(list.width >= 500, `the messages get the room (${list.width}px)`);
    } else {
      assert.equal(sidebar, false, "on a phone the chat is a screen of its own");
    }
    await shot(page, `${size}-room`);

    await page.goto(`${server.url}/dm/${bruno}/`);
    await page.getByTestId("attachment-image").waitFor();
    await page.waitForFunction(() => {
      const img = document.querySelector('[data-testid="attachment-image"]');
      return img && img.complete && img.naturalWidth > 0;
    });
    await fits(page, size);
    const img = await page.getByTestId("attachment-image").boundingBox();
    assert.ok(img.width <= SIZES[size].width - 32, "the picture is scaled into its bubble");
    await shot(page, `${size}-conversation`);
    await page.context().close();
  });
}
