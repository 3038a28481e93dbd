// `serve --compat tutorials`: the tutorials' own page scripts, byte for byte as the seeds print
// them, talk to our server over the tutorials' WebSocket URLs and frames, in a real browser.
//
// The pages are served from the server's origin by Playwright (`context.route`), so the
// server needs no route for them. Each script is read from the seed file at test time; only
// Django's template tags are replaced, as the template engine would render them.
//
// The seeds are verbatim copies of the tutorials in ./seeds (`TUTORIAL_SEEDS_DIR` overrides).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { join } from "node:path";
import { guestPage, launchBrowser, startServer } from "./harness.mjs";

const PW = "correct horse battery";
const SEEDS = process.env.TUTORIAL_SEEDS_DIR || join(import.meta.dirname, "seeds");
const HHMM = /^([01]\d|2[0-3]):[0-5]\d$/;
const GUEST = /^guest-[0-9A-Za-z]+$/;

let server;
let browser;
const ids = {};

before(async () => {
  server = await startServer({ args: ["--compat", "tutorials"] });
  browser = await launchBrowser();
  ids.ana = server.addUser("ana", "Ana", "tutor", PW);
  ids.bruno = server.addUser("bruno", "Bruno", "vet", PW);
  ids.carla = server.addUser("carla", "Carla", "tutor", PW);
  ids.davi = server.addUser("davi", "Davi", "vet", PW);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

// ---------------------------------------------------------------------------------------------
// The seeds' scripts.

/// The text of a ```javascript block of seed `prefix` (the first one after `heading`, or the
/// first in the file), exactly as the file has it, up to and including its last line's newline.
function seedBlock(prefix, heading) {
  const file = readdirSync(SEEDS).find((f) => f.startsWith(prefix + "_"));
  assert.ok(file, `no seed ${prefix}_* in ${SEEDS}`);
  const text = readFileSync(join(SEEDS, file), "utf8");
  let from = 0;
  if (heading) {
    from = text.search(heading);
    assert.ok(from >= 0, `seed ${file} has no heading ${heading}`);
  }
  const fence = "```javascript\n";
  const open = text.indexOf(fence, from);
  assert.ok(open >= 0, `seed ${file} has no javascript block after ${heading}`);
  const start = open + fence.length;
  const end = text.indexOf("\n```", start);
  assert.ok(end > start, `seed ${file}: the javascript block does not end`);
  return text.slice(start, end + 1);
}

/// Replaces the one occurrence of a template tag, as Django would render it.
function render(script, tag, value) {
  assert.equal(script.split(tag).length, 2, `the seed script has ${tag} exactly once`);
  return script.replace(tag, () => String(value));
}

/// Seed 000, section 6.1 (`mensagens.html`): the block includes its <script> tags.
function page000(contactId) {
  const block = seedBlock("000", /^### 6\.1\./m);
  assert.ok(block.startsWith("<script>") && block.trimEnd().endsWith("</script>"));
  assert.ok(block.includes("'/ws/chat/' + contactId + '/'"));
  const script = render(block, "{{ contato_selecionado.id }}", contactId);
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Mensagens</title></head><body>
<div id="chatBox"></div>
<form id="form"><input name="mensagem"><button>Enviar</button></form>
${script}</body></html>
`;
}

/// Seed 002, "Conexão no front" (the room page): the block is the script's body.
function page002(room, userId) {
  const block = seedBlock("002", /^## Conex.* no front$/m);
  assert.ok(block.includes("'?user={{user_id}}'"));
  const script = render(block, "{{user_id}}", userId);
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Sala</title></head><body>
<textarea id="chat-log"></textarea>
<input id="chat-message-input">
<input id="chat-message-submit" type="button" value="Send">
<script id="room-name" type="application/json">${JSON.stringify(room)}</script>
<script>
${script}</script>
</body></html>
`;
}

/// Seed 003, the first block: the block includes its <script> tags.
function page003() {
  const block = seedBlock("003");
  assert.ok(block.startsWith('<script type="text/javascript">'));
  assert.ok(block.includes("/ws/socket-server/"));
  assert.ok(!block.includes("{{") && !block.includes("{%"), "seed 003 has no template tags");
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Lobby</title></head><body>
<form id="form"><input name="message"><input name="message2"></form>
<div id="messages"></div>
${block}</body></html>
`;
}

const BLANK = `<!doctype html><html><head><meta charset="utf-8"></head><body></body></html>`;

// ---------------------------------------------------------------------------------------------
// Browser plumbing.

/// Polls `check` until it holds (a condition, not a sleep), failing after 10 s.
async function eventually(check, what) {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("timed out waiting until " + what);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/// Records, in the page, whether each WebSocket it creates opened and how it closed. The
/// pages' scripts are untouched: this only listens.
async function probeSockets(context) {
  await context.addInitScript(() => {
    const Native = window.WebSocket;
    const sockets = [];
    Object.defineProperty(window, "__sockets", { value: sockets });
    window.WebSocket = new Proxy(Native, {
      construct(target, args) {
        const ws = Reflect.construct(target, args);
        const rec = { url: ws.url, opened: false, closed: false, code: null };
        sockets.push(rec);
        ws.addEventListener("open", () => {
          rec.opened = true;
        });
        ws.addEventListener("close", (e) => {
          rec.closed = true;
          rec.code = e.code;
        });
        return ws;
      },
    });
  });
}

function parse(payload) {
  const text = typeof payload === "string" ? payload : payload.toString("utf8");
  try {
    return JSON.parse(text);
  } catch {
    return { unparseable: text };
  }
}

/// Everything a page receives and sends on its WebSockets, and its errors and console.
function watch(page) {
  const w = { received: [], sent: [], sockets: [], pageErrors: [], console: [] };
  page.on("websocket", (ws) => {
    w.sockets.push(ws.url());
    ws.on("framereceived", (f) => w.received.push(parse(f.payload)));
    ws.on("framesent", (f) => w.sent.push(parse(f.payload)));
  });
  page.on("pageerror", (e) => w.pageErrors.push(String(e)));
  page.on("console", (m) => w.console.push(`${m.type()}: ${m.text()}`));
  return w;
}

/// Opens `/tutorial/<file>` (served with `html` from the server's origin) in a new page of
/// `context`.
async function openTutorial(context, file, html) {
  const url = `${server.url}/tutorial/${file}`;
  await context.route(url, (route) =>
    route.fulfill({ status: 200, contentType: "text/html; charset=utf-8", body: html }),
  );
  const page = await context.newPage();
  const w = watch(page);
  await page.goto(url);
  return { page, w };
}

/// Waits until the page's first WebSocket opened or closed, and returns what happened.
async function firstSocket(page) {
  await page.waitForFunction(
    () => window.__sockets.length > 0 && (window.__sockets[0].opened || window.__sockets[0].closed),
    null,
    { timeout: 10_000 },
  );
  return page.evaluate(() => ({ ...window.__sockets[0] }));
}

async function assertOpen(page) {
  const s = await firstSocket(page);
  assert.deepEqual(
    { opened: s.opened, closed: s.closed },
    { opened: true, closed: false },
    `the page's socket to ${s.url} should be open (close code ${s.code})`,
  );
  return s;
}

/// A context whose pages may open sockets to the server. Chromium's Local Network Access
/// checks treat a page that Playwright fulfilled as coming from the public internet, which
/// may not reach 127.0.0.1 without this permission; the server's own pages are loopback and
/// need none.
function newContext() {
  return browser.newContext({ permissions: ["local-network-access"] });
}

async function newGuestContext() {
  const context = await newContext();
  await probeSockets(context);
  return context;
}

/// A context logged in as `username` through the login page.
async function loggedInContext(username) {
  const context = await newContext();
  await probeSockets(context);
  const page = await context.newPage();
  await page.goto(server.url + "/login");
  await page.getByTestId("login-username").fill(username);
  await page.getByTestId("login-password").fill(PW);
  await page.getByTestId("login-submit").click();
  await page.getByTestId("whoami").waitFor();
  await page.close();
  return context;
}

/// The seed's own close handlers log these; none should appear while the chat is up.
function socketClosedLogs(w) {
  return w.console.filter((l) => /socket (closed|fechou)/i.test(l));
}

function assertQuiet(w, who) {
  assert.deepEqual(w.pageErrors, [], `${who}: page errors`);
  assert.deepEqual(socketClosedLogs(w), [], `${who}: the seed's socket closed`);
}

/// A 000 frame: `{mensagem, enviado_por, data_envio: "HH:MM"}` and nothing else.
function assert000(frame, mensagem, enviadoPor) {
  const { data_envio: at, ...rest } = frame;
  assert.deepEqual(rest, { mensagem, enviado_por: enviadoPor });
  assert.match(String(at), HHMM);
}

async function history(request, room) {
  const res = await request.get(`${server.url}/api/rooms/${room}/messages`);
  assert.equal(res.status(), 200, `GET /api/rooms/${room}/messages: ${await res.text()}`);
  return res.json();
}

function pairRoom(a, b) {
  return `dm_${Math.min(a, b)}_${Math.max(a, b)}`;
}

/// Opens a WebSocket from inside `page` (same origin, same cookies), resolving once it is
/// open; it is kept as `window.__raw`.
async function openRaw(page, path) {
  await page.evaluate(
    (path) =>
      new Promise((ok, fail) => {
        const ws = new WebSocket("ws://" + location.host + path);
        window.__raw = ws;
        ws.onopen = () => ok();
        ws.onclose = (e) => fail(new Error(`${path} closed before opening (code ${e.code})`));
      }),
    path,
  );
}

async function sendRaw(page, frame) {
  await page.evaluate((text) => window.__raw.send(text), JSON.stringify(frame));
}

/// The HTTP status of a WebSocket handshake to `path` (101 when the server upgrades).
function handshakeStatus(path, headers = {}) {
  return new Promise((ok, fail) => {
    const req = httpRequest(server.url + path, {
      headers: {
        Connection: "Upgrade",
        Upgrade: "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": randomBytes(16).toString("base64"),
        Origin: server.url,
        ...headers,
      },
    });
    req.on("upgrade", (res, socket) => {
      socket.destroy();
      ok(res.statusCode);
    });
    req.on("response", (res) => {
      res.resume();
      ok(res.statusCode);
    });
    req.on("error", fail);
    req.setTimeout(10_000, () => req.destroy(new Error("the handshake timed out")));
    req.end();
  });
}

// ---------------------------------------------------------------------------------------------
// Seed 000: a tutor and a vet, privately.

test("seed 000: a tutor and a vet chat both ways through the tutorial's own script", async () => {
  const anaCtx = await loggedInContext("ana");
  const brunoCtx = await loggedInContext("bruno");
  // Bruno's page first, so his socket is in the room before Ana writes.
  const b = await openTutorial(brunoCtx, "000.html", page000(ids.ana));
  await assertOpen(b.page);
  const a = await openTutorial(anaCtx, "000.html", page000(ids.bruno));
  await assertOpen(a.page);
  assert.deepEqual(a.w.sockets, [`${server.url.replace("http", "ws")}/ws/chat/${ids.bruno}/`]);
  assert.deepEqual(b.w.sockets, [`${server.url.replace("http", "ws")}/ws/chat/${ids.ana}/`]);

  const m1 = "Oi, doutor! O Rex está tossindo 🐶";
  await a.page.locator('input[name="mensagem"]').fill(m1);
  await a.page.getByRole("button", { name: "Enviar" }).click();
  await eventually(() => a.w.received.length >= 1 && b.w.received.length >= 1, "both get Ana's message");
  assert.equal(await a.page.locator('input[name="mensagem"]').inputValue(), "", "the seed sent and cleared");
  for (const w of [a.w, b.w]) {
    assert.equal(w.received.length, 1, JSON.stringify(w.received));
    assert000(w.received[0], m1, "TUTOR");
  }
  assert.deepEqual(a.w.sent, [{ mensagem: m1 }]);

  const m2 = "Traga-o amanhã às 9h.";
  await b.page.locator('input[name="mensagem"]').fill(m2);
  await b.page.locator('input[name="mensagem"]').press("Enter");
  await eventually(() => a.w.received.length >= 2 && b.w.received.length >= 2, "both get Bruno's reply");
  for (const w of [a.w, b.w]) {
    assert.equal(w.received.length, 2, JSON.stringify(w.received));
    assert000(w.received[0], m1, "TUTOR");
    assert000(w.received[1], m2, "VETERINARIO");
  }
  assert.deepEqual(b.w.sent, [{ mensagem: m2 }]);

  // The seed's elided renderer appends one div per frame.
  for (const { page } of [a, b]) {
    assert.equal(await page.locator("#chatBox > *").count(), 2);
    assert.equal(await page.locator("#chatBox > div").count(), 2);
  }

  // Stored in the pair room, readable by a member.
  const room = pairRoom(ids.ana, ids.bruno);
  const page = await history(a.page.request, room);
  assert.equal(page.has_more, false);
  assert.deepEqual(
    page.messages.map((m) => ({ body: m.body, sender: m.sender })),
    [
      { body: m1, sender: { id: ids.ana, name: "Ana", role: "tutor" } },
      { body: m2, sender: { id: ids.bruno, name: "Bruno", role: "vet" } },
    ],
  );
  assert.ok(page.messages[0].seq < page.messages[1].seq);
  const anonymous = await fetch(`${server.url}/api/rooms/${room}/messages`);
  assert.ok([401, 403].includes(anonymous.status), `anonymous history: ${anonymous.status}`);

  assertQuiet(a.w, "ana");
  assertQuiet(b.w, "bruno");
  await anaCtx.close();
  await brunoCtx.close();
});

test("seed 000: a visitor who is not logged in is refused at the handshake", async () => {
  // The handshake itself, with and without a session.
  const path = `/ws/chat/${ids.bruno}/`;
  const anonymous = await handshakeStatus(path);
  assert.notEqual(anonymous, 101, "an anonymous handshake must not be upgraded");
  const anaCtx = await loggedInContext("ana");
  const cookie = (await anaCtx.cookies()).map((c) => `${c.name}=${c.value}`).join("; ");
  assert.equal(await handshakeStatus(path, { Cookie: cookie }), 101, "a member's handshake is upgraded");
  await anaCtx.close();

  // The tutorial page of a visitor: the socket never opens, the seed's onclose runs.
  const context = await newGuestContext();
  const url = `${server.url}/tutorial/000.html`;
  await context.route(url, (route) =>
    route.fulfill({ status: 200, contentType: "text/html; charset=utf-8", body: page000(ids.bruno) }),
  );
  const page = await context.newPage();
  const w = watch(page);
  const closedLog = page.waitForEvent("console", {
    predicate: (m) => m.text().includes("Chat socket fechou inesperadamente"),
    timeout: 10_000,
  });
  await page.goto(url);
  await closedLog;
  const s = await firstSocket(page);
  assert.equal(s.opened, false, "the visitor's socket must never open");
  assert.equal(s.closed, true);
  // The seed only sends on an open socket: the form does nothing.
  await page.locator('input[name="mensagem"]').fill("posso entrar?");
  await page.getByRole("button", { name: "Enviar" }).click();
  assert.equal(await page.locator('input[name="mensagem"]').inputValue(), "posso entrar?");
  assert.deepEqual(w.received, []);
  assert.deepEqual(w.sent, []);
  assert.equal(await page.locator("#chatBox > *").count(), 0);
  assert.deepEqual(w.pageErrors, []);
  await context.close();
});

test("seed 000: a blank mensagem gets an error frame, reaches nobody and is not stored", async () => {
  const carlaCtx = await loggedInContext("carla");
  const daviCtx = await loggedInContext("davi");
  const d = await openTutorial(daviCtx, "000.html", page000(ids.carla));
  await assertOpen(d.page);
  // Carla's client here is a plain socket: the seed's form never sends a blank mensagem.
  const c = await openTutorial(carlaCtx, "blank.html", BLANK);
  await openRaw(c.page, `/ws/chat/${ids.davi}/`);

  await sendRaw(c.page, { mensagem: "   " });
  await eventually(() => c.w.received.length >= 1, "the error frame arrives");
  assert.equal(c.w.received.length, 1, JSON.stringify(c.w.received));
  const [error] = c.w.received;
  assert.deepEqual(Object.keys(error), ["error"], JSON.stringify(error));
  assert.equal(typeof error.error, "string");
  assert.ok(error.error.length > 0);

  // A good message after it: the only thing Davi ever gets, and the only thing stored.
  const good = "Bom dia, Davi";
  await sendRaw(c.page, { mensagem: good });
  await eventually(() => c.w.received.length >= 2 && d.w.received.length >= 1, "the good message arrives");
  assert.equal(c.w.received.length, 2, JSON.stringify(c.w.received));
  assert000(c.w.received[1], good, "TUTOR");
  assert.equal(d.w.received.length, 1, JSON.stringify(d.w.received));
  assert000(d.w.received[0], good, "TUTOR");
  assert.equal(await d.page.locator("#chatBox > *").count(), 1);

  const stored = await history(c.page.request, pairRoom(ids.carla, ids.davi));
  assert.deepEqual(
    stored.messages.map((m) => [m.body, m.sender.id]),
    [[good, ids.carla]],
  );
  assertQuiet(d.w, "davi");
  assert.deepEqual(c.w.pageErrors, []);
  await carlaCtx.close();
  await daviCtx.close();
});

// ---------------------------------------------------------------------------------------------
// Seeds 002/004: rooms by name.

test("seed 002: a logged-in user and a guest chat in a named room; ?user= is ignored", async () => {
  const room = "petshop";
  const guestCtx = await newGuestContext();
  // The guest's page claims Ana's id in ?user=: it must not make the guest Ana.
  const g = await openTutorial(guestCtx, "002.html", page002(room, ids.ana));
  await assertOpen(g.page);
  const anaCtx = await loggedInContext("ana");
  const a = await openTutorial(anaCtx, "002.html", page002(room, ids.ana));
  await assertOpen(a.page);
  const ws = server.url.replace("http", "ws");
  assert.deepEqual(g.w.sockets, [`${ws}/ws/chat/${room}?user=${ids.ana}`]);
  assert.deepEqual(a.w.sockets, [`${ws}/ws/chat/${room}?user=${ids.ana}`]);

  const m1 = "Bom dia, sala! Alguém já levou o gato à vacina?";
  await a.page.locator("#chat-message-input").fill(m1);
  await a.page.locator("#chat-message-input").press("Enter");
  await eventually(() => a.w.received.length >= 1 && g.w.received.length >= 1, "both get Ana's message");
  for (const w of [a.w, g.w]) {
    assert.deepEqual(w.received, [{ message: m1, remetente: "Ana" }]);
  }
  assert.equal(await a.page.locator("#chat-message-input").inputValue(), "");

  const m2 = "Olá, Ana — ainda não";
  await g.page.locator("#chat-message-input").fill(m2);
  await g.page.locator("#chat-message-submit").click();
  await eventually(() => a.w.received.length >= 2 && g.w.received.length >= 2, "both get the guest's message");
  const guestName = g.w.received[1].remetente;
  assert.match(String(guestName), GUEST);
  for (const w of [a.w, g.w]) {
    assert.deepEqual(w.received, [
      { message: m1, remetente: "Ana" },
      { message: m2, remetente: guestName },
    ]);
  }
  assert.deepEqual(a.w.sent, [{ message: m1 }]);
  assert.deepEqual(g.w.sent, [{ message: m2 }]);

  const log = `Ana: ${m1}\n${guestName}: ${m2}\n`;
  for (const { page } of [a, g]) {
    assert.equal(await page.locator("#chat-log").inputValue(), log);
  }

  const stored = await history(g.page.request, room);
  // A guest is known by a guest id (from the browser's chat_guest cookie), not by the name.
  const guestId = stored.messages[1]?.sender?.guest;
  assert.match(String(guestId), /^[0-9a-f]{16}$/, "the guest has a guest id");
  assert.deepEqual(
    stored.messages.map((m) => ({ body: m.body, sender: m.sender })),
    [
      { body: m1, sender: { id: ids.ana, name: "Ana", role: "tutor" } },
      { body: m2, sender: { name: guestName, guest: guestId } },
    ],
  );
  assertQuiet(a.w, "ana");
  assertQuiet(g.w, "guest");
  await anaCtx.close();
  await guestCtx.close();
});

test("seed 002's frames also on /ws/chat/<room>/ for a room that is not all digits; ?name= names a guest", async () => {
  const room = "sala2";
  const gCtx = await newGuestContext();
  const g = await openTutorial(gCtx, "002.html", page002(room, 7));
  await assertOpen(g.page);
  const zCtx = await newGuestContext();
  const z = await openTutorial(zCtx, "blank.html", BLANK);
  await openRaw(z.page, `/ws/chat/${room}/?name=Zeca`);

  await sendRaw(z.page, { message: "oi, pela barra" });
  await eventually(() => z.w.received.length >= 1 && g.w.received.length >= 1, "both get Zeca's message");
  for (const w of [z.w, g.w]) {
    assert.deepEqual(w.received, [{ message: "oi, pela barra", remetente: "Zeca" }]);
  }

  await g.page.locator("#chat-message-input").fill("oi, Zeca");
  await g.page.locator("#chat-message-input").press("Enter");
  await eventually(() => z.w.received.length >= 2 && g.w.received.length >= 2, "both get the reply");
  const guestName = g.w.received[1].remetente;
  assert.match(String(guestName), GUEST);
  for (const w of [z.w, g.w]) {
    assert.deepEqual(w.received, [
      { message: "oi, pela barra", remetente: "Zeca" },
      { message: "oi, Zeca", remetente: guestName },
    ]);
  }
  assert.equal(await g.page.locator("#chat-log").inputValue(), `Zeca: oi, pela barra\n${guestName}: oi, Zeca\n`);

  const stored = await history(g.page.request, room);
  assert.deepEqual(
    stored.messages.map((m) => [m.body, m.sender.name]),
    [
      ["oi, pela barra", "Zeca"],
      ["oi, Zeca", guestName],
    ],
  );
  assertQuiet(g.w, "guest");
  assert.deepEqual(z.w.pageErrors, []);
  await gCtx.close();
  await zCtx.close();
});

// ---------------------------------------------------------------------------------------------
// Seed 003: one group, `test`.

test("seed 003: guests in the one room `test` get {type, message, message2} exactly", async () => {
  const aCtx = await newGuestContext();
  const a = await openTutorial(aCtx, "003.html", page003());
  await assertOpen(a.page);
  const bCtx = await newGuestContext();
  const b = await openTutorial(bCtx, "003.html", page003());
  await assertOpen(b.page);
  const ws = server.url.replace("http", "ws");
  assert.deepEqual(a.w.sockets, [`${ws}/ws/socket-server/`]);

  const m1 = { message: "Olá, grupo!", message2: " segunda  parte ✓ " };
  await a.page.locator('input[name="message"]').fill(m1.message);
  await a.page.locator('input[name="message2"]').fill(m1.message2);
  // The form has two text fields and no button: Enter does not submit it; a submit does.
  await a.page.locator("#form").evaluate((f) => f.requestSubmit());
  await eventually(() => a.w.received.length >= 1 && b.w.received.length >= 1, "both get the first message");
  for (const w of [a.w, b.w]) {
    assert.deepEqual(w.received, [{ type: "chat", ...m1 }]);
  }
  assert.deepEqual(a.w.sent, [m1]);
  assert.equal(await a.page.locator('input[name="message"]').inputValue(), "", "the seed reset the form");

  const m2 = { message: "resposta", message2: "" };
  await b.page.locator('input[name="message"]').fill(m2.message);
  await b.page.locator("#form").evaluate((f) => f.requestSubmit());
  await eventually(() => a.w.received.length >= 2 && b.w.received.length >= 2, "both get the reply");
  for (const w of [a.w, b.w]) {
    assert.deepEqual(w.received, [
      { type: "chat", ...m1 },
      { type: "chat", ...m2 },
    ]);
  }
  assert.deepEqual(b.w.sent, [m2]);

  for (const { page } of [a, b]) {
    assert.deepEqual(await page.locator("#messages p").allTextContents(), [m1.message, m2.message]);
  }

  const stored = await history(a.page.request, "test");
  assert.equal(stored.messages.length, 2, JSON.stringify(stored.messages));
  const [first, second] = stored.messages.map((m) => m.body);
  assert.ok(first.startsWith(m1.message), JSON.stringify(first));
  assert.ok(first.includes(m1.message2), JSON.stringify(first));
  assert.equal(second, m2.message);
  assertQuiet(a.w, "first guest");
  assertQuiet(b.w, "second guest");
  await aCtx.close();
  await bCtx.close();
});

// ---------------------------------------------------------------------------------------------
// The native protocol next to the tutorials'.

test("in compat mode our web client still works, in the same room as a 002 page", async () => {
  const tCtx = await newGuestContext();
  const t = await openTutorial(tCtx, "002.html", page002("lobby", 3));
  await assertOpen(t.page);

  const native = await guestPage(browser, server.url, "visitante");
  const nw = watch(native);
  await native.goto(`${server.url}/chat/lobby/`);
  await native.getByTestId("status").and(native.locator('[data-state="online"]')).waitFor();

  // Typed key by key, so the web client also sends typing frames: the 002 page must not
  // see them, nor the join.
  const input = native.getByTestId("message-input");
  await input.pressSequentially("oi do cliente nativo");
  await input.press("Enter");
  await native.getByTestId("message").filter({ hasText: "oi do cliente nativo" }).waitFor();
  await eventually(() => t.w.received.length >= 1, "the 002 page gets the web client's message");
  assert.deepEqual(t.w.received, [{ message: "oi do cliente nativo", remetente: "visitante" }]);
  assert.equal(await t.page.locator("#chat-log").inputValue(), "visitante: oi do cliente nativo\n");

  await t.page.locator("#chat-message-input").fill("oi do tutorial");
  await t.page.locator("#chat-message-input").press("Enter");
  const msg = native.getByTestId("message").filter({ hasText: "oi do tutorial" });
  await msg.waitFor();
  await eventually(() => t.w.received.length >= 2, "the 002 page gets its own message back");
  const guestName = t.w.received[1].remetente;
  assert.match(String(guestName), GUEST);
  assert.deepEqual(t.w.received, [
    { message: "oi do cliente nativo", remetente: "visitante" },
    { message: "oi do tutorial", remetente: guestName },
  ]);
  assert.equal(await msg.locator(".body").textContent(), "oi do tutorial");
  assert.equal(await msg.locator(".sender").textContent(), guestName);
  // The web client got the native frames for it.
  const nativeMsg = nw.received.find((f) => f.type === "message" && f.body === "oi do tutorial");
  assert.ok(nativeMsg, JSON.stringify(nw.received));
  assert.equal(nativeMsg.room, "lobby");
  assert.equal(nativeMsg.sender.name, guestName);

  const stored = await history(t.page.request, "lobby");
  assert.deepEqual(
    stored.messages.map((m) => [m.body, m.sender.name]),
    [
      ["oi do cliente nativo", "visitante"],
      ["oi do tutorial", guestName],
    ],
  );
  assertQuiet(t.w, "002 page");
  assert.deepEqual(nw.pageErrors, []);
  await native.context().close();
  await tCtx.close();
});
