// The Socket.IO endpoint (`/socket.io/`, namespaces `/chat` and `/`), end to end: the real
// chat-server binary, socket.io-client 4.8 from Node, native /ws clients, and seed 001's
// snippet in Chromium.
import { after, afterEach, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import http from "node:http";
import { join } from "node:path";
import WebSocket from "ws";
import { launchBrowser, startServer } from "./harness.mjs";
import {
  Native,
  WAIT_MS,
  assertErrorAck,
  assertNewMessage,
  connectSio,
  eventually,
  httpHistory,
  issueToken,
  login,
  refusedSio,
  seed001Snippet,
  within,
  wsUrl,
} from "./sio_helpers.mjs";

const PW = "correct horse battery";
let server;
let browser;
const ids = {};
const open = [];

before(async () => {
  server = await startServer();
  ids.ana = server.addUser("ana", "Ana", "tutor", PW);
  ids.bruno = server.addUser("bruno", "Bruno", "vet", PW);
  ids.carla = server.addUser("carla", "Carla", "nurse", PW);
});

afterEach(() => {
  for (const c of open.splice(0)) c.close();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const ANA = () => ({ id: ids.ana, name: "Ana", role: "tutor" });
const BRUNO = () => ({ id: ids.bruno, name: "Bruno", role: "vet" });
const CARLA = () => ({ id: ids.carla, name: "Carla", role: "nurse" });
const pairRoom = (a, b) => `dm_${Math.min(a, b)}_${Math.max(a, b)}`;

async function sio(label, opts = {}) {
  const c = await connectSio(server.url, label, opts);
  open.push(c);
  return c;
}

async function native(label, path, headers) {
  const n = await Native.open(wsUrl(server.url, path), label, headers);
  open.push(n);
  return n;
}

/// A leave_chat ack: `{ok: true}` (other fields, such as chat_id, may come along).
const assertLeft = (ack) => assert.ok(ack?.ok === true && !ack.error, `leave_chat ack: ${JSON.stringify(ack)}`);
const names = (online) => (online ?? []).map((u) => u.name);

/// Two guests chat in `room` over `opts`' transports: join acks, presence, acks with seqs, and
/// each new_message received by both, identical, once, in both vocabularies.
async function twoClientsChat(room, opts) {
  const aName = `ana-${room}`;
  const bName = `bruno-${room}`;
  const a = await sio(aName, { ...opts, query: { name: aName } });
  const b = await sio(bName, { ...opts, auth: { name: bName } });

  const ja = await a.join(room);
  assert.equal(ja.chat_id, room, `join ack: ${JSON.stringify(ja)}`);
  assert.equal(ja.last_seq, 0, `a fresh room: ${JSON.stringify(ja)}`);
  assert.ok(names(ja.online).includes(aName), `online after joining: ${JSON.stringify(ja)}`);
  const fromA = a.mark();
  const jb = await b.join(room);
  assert.equal(jb.chat_id, room);
  for (const n of [aName, bName]) assert.ok(names(jb.online).includes(n), `${n} online: ${JSON.stringify(jb)}`);
  const joined = await a.waitFor("user_joined", (d) => d.user?.name === bName, `user_joined for ${bName}`, {
    from: fromA,
  });
  assert.equal(joined.chat_id, room);

  const ack1 = await a.send(room, "hello from a", { client_id: "c-a1" });
  assert.equal(ack1.seq, 1, `first message of a fresh room: ${JSON.stringify(ack1)}`);
  assert.equal(ack1.chat_id, room);
  assert.equal(ack1.client_id, "c-a1");
  const [ma, mb] = await Promise.all(
    [a, b].map((c) => c.waitFor("new_message", (m) => m.seq === ack1.seq, `new_message seq ${ack1.seq}`)),
  );
  assertNewMessage(ma, { room, seq: ack1.seq, body: "hello from a", client_id: "c-a1", sender: { name: aName, guest: true } });
  assert.deepEqual(mb, ma, "both clients receive the same message");

  const ack2 = await b.send(room, "hello from b");
  assert.equal(ack2.seq, ack1.seq + 1, `the next seq: ${JSON.stringify(ack2)}`);
  const [ma2, mb2] = await Promise.all(
    [a, b].map((c) => c.waitFor("new_message", (m) => m.seq === ack2.seq, `new_message seq ${ack2.seq}`)),
  );
  assertNewMessage(ma2, { room, seq: ack2.seq, body: "hello from b", sender: { name: bName, guest: true } });
  assert.deepEqual(mb2, ma2);
  for (const c of [a, b]) {
    const seqs = c.all("new_message", (m) => m.room === room).map((m) => m.seq);
    assert.deepEqual(seqs, [ack1.seq, ack2.seq], `${c.label} got each message once`);
    c.assertConnected();
  }
  return { a, b };
}

test("websocket transport: two clients chat with one seq per message and both vocabularies", async () => {
  const { a, b } = await twoClientsChat("t1-ws", { transports: ["websocket"] });
  assert.equal(a.transport, "websocket");
  assert.equal(b.transport, "websocket");
});

test("polling transport only: the same conversation over long-polling", async () => {
  const { a, b } = await twoClientsChat("t2-polling", { transports: ["polling"] });
  assert.equal(a.socket.io.engine.transport.name, "polling");
  assert.equal(b.socket.io.engine.transport.name, "polling");
});

test("default transports: starts on polling, upgrades to websocket, chats", async () => {
  // The client that must upgrade: its first transport and its upgrade are watched from the start.
  let first;
  let upgraded;
  const label = "upgrader";
  const c = await sio(label, {
    query: { name: label },
    onSocket: (socket) => {
      first = socket.io.engine.transport.name;
      upgraded = new Promise((ok) => socket.io.engine.once("upgrade", (t) => ok(t.name)));
    },
  });
  assert.equal(first, "polling", "the default client opens with polling");
  assert.equal(await within(upgraded, `${label} to upgrade`), "websocket");
  assert.equal(c.transport, "websocket");
  c.close();
  const { a, b } = await twoClientsChat("t3-upgrade", {});
  for (const x of [a, b]) {
    await eventually(() => x.transport === "websocket", `${x.label} upgraded to websocket`);
  }
  // and a message after the upgrade still arrives
  const ack = await a.send("t3-upgrade", "after the upgrade");
  const m = await b.waitFor("new_message", (m) => m.seq === ack.seq, "the message after the upgrade");
  assertNewMessage(m, { room: "t3-upgrade", seq: ack.seq, body: "after the upgrade" });
});

test("the / namespace behaves like /chat and shares its rooms", async () => {
  const room = "t1-root-ns";
  const onRoot = await sio("root-ns", { ns: "/", query: { name: "root-ns" } });
  const onChat = await sio("chat-ns", { query: { name: "chat-ns" } });
  const j = await onRoot.join(room);
  assert.equal(j.chat_id, room);
  await onChat.join(room);
  const ack = await onRoot.send(room, "from the root namespace", { client_id: "root-1" });
  assert.equal(ack.chat_id, room);
  const [mr, mc] = await Promise.all(
    [onRoot, onChat].map((c) => c.waitFor("new_message", (m) => m.seq === ack.seq, `seq ${ack.seq}`)),
  );
  assertNewMessage(mr, { room, seq: ack.seq, body: "from the root namespace", sender: { name: "root-ns", guest: true } });
  assert.deepEqual(mc, mr);
  const back = await onChat.send(room, "from /chat");
  const mb = await onRoot.waitFor("new_message", (m) => m.seq === back.seq, `seq ${back.seq} on /`);
  assertNewMessage(mb, { room, seq: ack.seq + 1, body: "from /chat" });
});

test("seed 001's snippet, as printed, in Chromium: two pages chat", async () => {
  browser = await launchBrowser();
  const snippet = seed001Snippet();
  const body = snippet.match(/conteudo:\s*'([^']*)'/)?.[1];
  assert.ok(body, "the snippet sends a conteudo");
  const chatId = 1001; // the seed's chat ids are Django primary keys: numbers
  const bundle = readFileSync(join(import.meta.dirname, "node_modules/socket.io-client/dist/socket.io.min.js"), "utf8");
  const html = `<!doctype html>
<html><head><meta charset="utf-8"><title>seed 001</title>
<script src="/sio.js"></script>
<script>
window.received = [];
window.serverErrors = [];
const chatId = ${chatId};
${snippet}
window.seedSocket = socket;
socket.on('new_message', (m) => window.received.push(m));
socket.on('error', (e) => window.serverErrors.push(e));
socket.on('connect_error', (e) => window.serverErrors.push({ connect_error: String(e && e.message) }));
</script></head><body>seed 001</body></html>`;

  async function seedPage() {
    // A page fulfilled by context.route has no address space of its own, so Chromium's Local
    // Network Access checks would block its connections to 127.0.0.1 (a page the server itself
    // served would not be blocked): the permission stands in for that.
    const context = await browser.newContext({ permissions: ["local-network-access"] });
    await context.route(server.url + "/sio.js", (r) =>
      r.fulfill({ contentType: "application/javascript; charset=utf-8", body: bundle }),
    );
    await context.route(server.url + "/seed001.html", (r) => r.fulfill({ contentType: "text/html; charset=utf-8", body: html }));
    const page = await context.newPage();
    const pageErrors = [];
    page.on("pageerror", (e) => pageErrors.push(e));
    await page.goto(server.url + "/seed001.html");
    return { context, page, pageErrors };
  }
  const received = (p) => p.page.evaluate(() => window.received);
  const waitReceived = async (p, n, what) => {
    try {
      await p.page.waitForFunction((n) => window.received.length >= n, n, { timeout: WAIT_MS });
    } catch (e) {
      const state = await p.page.evaluate(() => ({
        received: window.received,
        errors: window.serverErrors,
        connected: window.seedSocket && window.seedSocket.connected,
      }));
      throw new Error(`${what}: ${e.message}; page state: ${JSON.stringify(state)}`);
    }
  };

  const a = await seedPage();
  await waitReceived(a, 1, "page A receives its own message");
  const b = await seedPage();
  await waitReceived(b, 1, "page B receives its own message");
  await waitReceived(a, 2, "page A receives page B's message");
  const [a1, a2] = await received(a);
  const [b1] = await received(b);
  assertNewMessage(a1, { room: String(chatId), body });
  assertNewMessage(a2, { room: String(chatId), body, seq: a1.seq + 1 });
  assert.deepEqual(b1, a2, "B's message is the same for A and B");
  assert.match(a1.sender.name, /^guest-[0-9a-f]{6}$/, "a browser without a name is a guest");

  // A answers through the seed's own socket; B receives it.
  await a.page.evaluate((chatId) => window.seedSocket.emit("send_message", { chat_id: chatId, conteudo: "resposta de A" }), chatId);
  await waitReceived(b, 2, "page B receives page A's answer");
  const [, b2] = await received(b);
  assertNewMessage(b2, { room: String(chatId), body: "resposta de A", seq: a2.seq + 1, sender: { name: a1.sender.name } });

  for (const p of [a, b]) {
    const state = await p.page.evaluate(() => ({
      transport: window.seedSocket.io.engine.transport.name,
      errors: window.serverErrors,
    }));
    assert.equal(state.transport, "websocket", "the snippet asks for websocket first");
    assert.deepEqual(state.errors, [], "no error or connect_error events");
    assert.deepEqual(p.pageErrors, []);
    await p.context.close();
  }
});

test("a native /ws client and a Socket.IO client share a room: messages, seqs, typing, presence", async () => {
  const room = "t5-mixed";
  const s = await sio("sio-t5", { query: { name: "sio-t5" } });
  await s.join(room);
  const fromS = s.mark();
  const n = await native("native-t5", "/ws?name=nat-t5");
  const joined = await n.join(room);
  assert.ok(names(joined.online).includes("sio-t5"), `native sees the Socket.IO user online: ${JSON.stringify(joined)}`);
  const uj = await s.waitFor("user_joined", (d) => d.user?.name === "nat-t5", "user_joined for the native user", {
    from: fromS,
  });
  assert.equal(uj.chat_id, room);

  // native -> Socket.IO
  const nAck = await n.sendMessage(room, "from native", "n-1");
  assert.equal(nAck.client_id, "n-1");
  const sm = await s.waitFor("new_message", (m) => m.seq === nAck.seq, "the native message");
  assertNewMessage(sm, { room, seq: nAck.seq, body: "from native", client_id: "n-1", sender: { name: "nat-t5", guest: true } });
  const nOwn = await n.waitFor("message", (f) => f.seq === nAck.seq, "native's own message");
  assert.equal(nOwn.sent_at, sm.sent_at, "one stored message, one timestamp");

  // Socket.IO -> native
  const sAck = await s.send(room, "from socket.io", { client_id: "s-1" });
  assert.equal(sAck.seq, nAck.seq + 1, "one sequence for both kinds of client");
  const nf = await n.waitFor("message", (f) => f.seq === sAck.seq, "the Socket.IO message on /ws");
  assert.equal(nf.room, room);
  assert.equal(nf.body, "from socket.io");
  assert.equal(nf.client_id, "s-1");
  assert.equal(nf.sender.name, "sio-t5");
  const sOwn = await s.waitFor("new_message", (m) => m.seq === sAck.seq, "Socket.IO's own message");
  assert.equal(sOwn.sent_at, nf.sent_at);

  // typing, Socket.IO -> native
  let from = n.mark();
  s.emit("typing_start", { chat_id: room });
  await n.waitFor("typing", (f) => f.room === room && f.user?.name === "sio-t5" && f.active === true, "typing start on /ws", { from });
  from = n.mark();
  s.emit("typing_stop", { chat_id: room });
  await n.waitFor("typing", (f) => f.room === room && f.user?.name === "sio-t5" && f.active === false, "typing stop on /ws", { from });

  // typing, native -> Socket.IO
  from = s.mark();
  n.send({ type: "typing", room, active: true });
  const t1 = await s.waitFor("user_typing", (d) => d.user?.name === "nat-t5" && d.typing === true, "user_typing true", { from });
  assert.equal(t1.chat_id, room);
  from = s.mark();
  n.send({ type: "typing", room, active: false });
  const t0 = await s.waitFor("user_typing", (d) => d.user?.name === "nat-t5" && d.typing === false, "user_typing false", { from });
  assert.equal(t0.chat_id, room);

  // presence both ways
  from = n.mark();
  assertLeft(await s.ask("leave_chat", { chat_id: room }));
  await n.waitFor("presence", (f) => f.room === room && f.event === "leave" && f.user?.name === "sio-t5", "presence leave on /ws", { from });
  from = n.mark();
  await s.join(room);
  await n.waitFor("presence", (f) => f.room === room && f.event === "join" && f.user?.name === "sio-t5", "presence join on /ws", { from });
  from = s.mark();
  n.close();
  const left = await s.waitFor("user_left", (d) => d.user?.name === "nat-t5", "user_left when the native socket closes", { from });
  assert.equal(left.chat_id, room);

  // one history
  const h = await httpHistory(server.url, room);
  assert.deepEqual(
    h.messages.map((m) => [m.seq, m.body]),
    [
      [nAck.seq, "from native"],
      [sAck.seq, "from socket.io"],
    ],
  );
  assert.equal(h.has_more, false);
  s.assertConnected();
});

test("resume with since: exactly the missed messages, in order, then live ones; history pages", async () => {
  const room = "t6-resume";
  const a = await sio("a-t6", { query: { name: "a-t6" } });
  await a.join(room);
  const seqs = [];
  for (let i = 1; i <= 5; i++) seqs.push((await a.send(room, `m${i}`)).seq);
  assert.deepEqual(seqs, [1, 2, 3, 4, 5]);

  const b = await sio("b-t6", { query: { name: "b-t6" } });
  let from = b.mark();
  const jb = await b.join(room, { since: seqs[1] });
  assert.equal(jb.last_seq, seqs[4]);
  const replay = await b.waitForCount("new_message", (m) => m.room === room, 3, "the replay after since=2", { from });
  assert.deepEqual(
    replay.map((m) => [m.seq, m.body]),
    [
      [3, "m3"],
      [4, "m4"],
      [5, "m5"],
    ],
  );
  for (const m of replay) assertNewMessage(m, { room, sender: { name: "a-t6", guest: true } });
  const live = await a.send(room, "m6");
  await b.waitFor("new_message", (m) => m.seq === live.seq, "the live message after the replay", { from });
  assert.deepEqual(
    b.all("new_message", (m) => m.room === room, from).map((m) => m.seq),
    [3, 4, 5, live.seq],
    "no gap, no duplicate",
  );

  // B goes away; A writes; B comes back with since = the last seq it saw.
  const lastSeen = live.seq;
  b.close();
  const missed = [];
  for (const body of ["m7", "m8", "m9"]) missed.push((await a.send(room, body)).seq);
  const b2 = await sio("b-t6 again", { query: { name: "b-t6" } });
  from = b2.mark();
  const jb2 = await b2.join(room, { since: lastSeen });
  assert.equal(jb2.last_seq, missed[2]);
  const again = await b2.waitForCount("new_message", (m) => m.room === room, 3, "the missed messages", { from });
  assert.deepEqual(
    again.map((m) => [m.seq, m.body]),
    [
      [missed[0], "m7"],
      [missed[1], "m8"],
      [missed[2], "m9"],
    ],
  );
  const live2 = await a.send(room, "m10");
  await b2.waitFor("new_message", (m) => m.seq === live2.seq, "live after the resume", { from });
  assert.deepEqual(b2.all("new_message", (m) => m.room === room, from).map((m) => m.seq), [...missed, live2.seq]);

  // A join with since=0 while messages keep arriving: every seq once, in order.
  const c = await sio("c-t6", { query: { name: "c-t6" } });
  from = c.mark();
  const sending = Promise.all(Array.from({ length: 10 }, (_, i) => a.ask("send_message", { chat_id: room, conteudo: `race ${i}` })));
  await c.join(room, { since: 0 });
  const acks = await sending;
  for (const ack of acks) assert.ok(Number.isInteger(ack?.seq), `race send acked: ${JSON.stringify(ack)}`);
  const last = Math.max(...acks.map((x) => x.seq));
  await c.waitFor("new_message", (m) => m.seq === last, `seq ${last} after a join during sends`, { from });
  const cs = c.all("new_message", (m) => m.room === room, from).map((m) => m.seq);
  assert.deepEqual(cs, Array.from({ length: last }, (_, i) => i + 1), "1..last exactly once, in order");

  // history pages over Socket.IO
  const newest = await a.ask("history", { chat_id: room, limit: 2 });
  assert.equal(newest.chat_id, room);
  assert.deepEqual(newest.messages.map((m) => m.seq), [last - 1, last], "the newest 2, oldest first");
  assert.equal(newest.has_more, true);
  for (const m of newest.messages) assertNewMessage(m, { room });
  const oldest = await a.ask("history", { chat_id: room, before: 3 });
  assert.deepEqual(
    oldest.messages.map((m) => [m.seq, m.body]),
    [
      [1, "m1"],
      [2, "m2"],
    ],
  );
  assert.equal(oldest.has_more, false);
});

test("auth: cookie, session_key, session, token (query and auth), guests; pair rooms; mark_read; origin", async () => {
  const room = "t7-auth";
  const anaLogin = await login(server.url, "ana", PW);
  const brunoLogin = await login(server.url, "bruno", PW);
  const carlaToken = issueToken(server.dataDir, "carla");
  const observer = await sio("observer-t7", { query: { name: "observer-t7" } });
  await observer.join(room);

  const cases = [
    ["cookie (with a query name that must be ignored)", { extraHeaders: { cookie: anaLogin.cookie }, query: { name: "impostor" } }, ANA()],
    ["query.session_key", { query: { session_key: brunoLogin.session } }, BRUNO()],
    ["query.session", { query: { session: brunoLogin.session } }, BRUNO()],
    ["query.token", { query: { token: carlaToken } }, CARLA()],
    ["auth.token", { auth: { token: carlaToken } }, CARLA()],
    ["cookie over websocket only", { transports: ["websocket"], extraHeaders: { cookie: anaLogin.cookie } }, ANA()],
    ["query.session_key over polling only", { transports: ["polling"], query: { session_key: brunoLogin.session } }, BRUNO()],
    ["guest by auth.name", { auth: { name: "visitante" } }, { name: "visitante", guest: true }],
    ["guest by query.name", { query: { name: "visita-q" } }, { name: "visita-q", guest: true }],
    ["guest without a name", {}, { name: /^guest-[0-9a-f]{6}$/, guest: true }],
  ];
  const clients = {};
  for (const [label, opts, sender] of cases) {
    const c = await sio(label, opts);
    clients[label] = c;
    await c.join(room);
    const body = `from ${label}`;
    const ack = await c.send(room, body);
    const m = await observer.waitFor("new_message", (m) => m.seq === ack.seq, `the message of ${label}`);
    assertNewMessage(m, { room, seq: ack.seq, body, sender });
    if (sender.id) {
      assert.deepEqual(m.remetente, { id: sender.id, nome: sender.name, tipo: sender.role }, `remetente of ${label}`);
    }
  }

  // the pair room of ana and bruno
  const dm = pairRoom(ids.ana, ids.bruno);
  const ana = clients["cookie (with a query name that must be ignored)"];
  const bruno = clients["query.session_key"];
  const carla = clients["query.token"];
  const guest = clients["guest by auth.name"];
  await ana.join(dm);
  await bruno.join(dm);
  assertErrorAck(await carla.ask("join_chat", { chat_id: dm }), "forbidden", "a third user joins the pair room");
  assertErrorAck(await guest.ask("join_chat", { chat_id: dm }), "forbidden", "a guest joins the pair room");
  let from = carla.mark();
  carla.emit("join_chat", { chat_id: dm });
  const ev = await carla.waitFor("error", () => true, "the error event for a refused pair room", { from });
  assert.equal(ev.code, "forbidden");
  assertErrorAck(
    await carla.ask("send_message", { chat_id: dm, conteudo: "let me in" }),
    "not_joined",
    "a refused user sends to the pair room",
  );
  const priv = await ana.send(dm, "just us");
  const pm = await bruno.waitFor("new_message", (m) => m.room === dm && m.seq === priv.seq, "the private message");
  assertNewMessage(pm, { room: dm, body: "just us", sender: ANA() });
  // a barrier in a room carla is in: nothing of the pair room reached her
  const barrier = await observer.send(room, "barrier");
  await carla.waitFor("new_message", (m) => m.seq === barrier.seq && m.room === room, "the barrier message");
  assert.deepEqual(carla.all("new_message", (m) => m.room === dm), [], "carla received nothing of the pair room");
  assert.deepEqual(guest.all("new_message", (m) => m.room === dm), [], "the guest received nothing of the pair room");

  // read receipts: users yes, guests no
  from = ana.mark();
  bruno.emit("mark_read", { chat_id: dm, seq: priv.seq });
  const read = await ana.waitFor("message_read", (d) => d.chat_id === dm, "message_read for ana", { from });
  assert.equal(read.seq, priv.seq);
  assert.equal(read.user?.name, "Bruno");
  assert.equal(read.user?.id, ids.bruno);
  assertErrorAck(await guest.ask("mark_read", { chat_id: room, seq: barrier.seq }), "forbidden", "a guest marks read");
  from = guest.mark();
  guest.emit("mark_read", { chat_id: room, seq: barrier.seq });
  assert.equal((await guest.waitFor("error", () => true, "guest mark_read error event", { from })).code, "forbidden");

  // origins: a foreign one is refused on both transports, the server's own is accepted
  for (const transports of [["polling"], ["websocket"]]) {
    const err = await refusedSio(server.url, `evil origin over ${transports}`, {
      transports,
      extraHeaders: { origin: "http://evil.example" },
    });
    assert.ok(err instanceof Error, `connect_error over ${transports}`);
    const ok = await sio(`own origin over ${transports}`, { transports, extraHeaders: { origin: server.url } });
    ok.assertConnected();
  }
  const port = new URL(server.url).port;
  const pollStatus = await new Promise((ok, fail) => {
    http
      .get({ host: "127.0.0.1", port, path: "/socket.io/?EIO=4&transport=polling", headers: { origin: "http://evil.example" } }, (res) => {
        res.resume();
        ok(res.statusCode);
      })
      .on("error", fail);
  });
  assert.equal(pollStatus, 403, "polling handshake from a foreign origin");
  const wsStatus = await within(
    new Promise((ok) => {
      const ws = new WebSocket(wsUrl(server.url, "/socket.io/?EIO=4&transport=websocket"), {
        headers: { origin: "http://evil.example" },
      });
      ws.on("unexpected-response", (_req, res) => ok(res.statusCode));
      ws.on("open", () => {
        ok("opened");
        ws.close();
      });
      ws.on("error", () => {});
    }),
    "the websocket handshake answer",
  );
  assert.equal(wsStatus, 403, "websocket handshake from a foreign origin");
  for (const c of Object.values(clients)) c.assertConnected();
});

test("bad payloads answer each error code by ack and by error event; the socket keeps working", async () => {
  const g = await sio("bad-t8", { query: { name: "bad-t8" } });
  await g.join("t8-a");
  const dm = pairRoom(ids.ana, ids.bruno);
  const cases = [
    ["an empty conteudo", "send_message", [{ chat_id: "t8-a", conteudo: "" }], "empty_message"],
    ["a blank conteudo", "send_message", [{ chat_id: "t8-a", conteudo: "  \n\t " }], "empty_message"],
    ["4001 characters", "send_message", [{ chat_id: "t8-a", conteudo: "a".repeat(4001) }], "too_large"],
    ["a room not joined", "send_message", [{ chat_id: "t8-elsewhere", conteudo: "x" }], "not_joined"],
    ["a string payload", "send_message", ["just text"], "invalid_json"],
    ["an array payload", "send_message", [["t8-a", "x"]], "invalid_json"],
    ["no payload", "send_message", [], "invalid_json"],
    ["a number conteudo", "send_message", [{ chat_id: "t8-a", conteudo: 42 }], "invalid_json"],
    ["a room name with a space", "join_chat", [{ chat_id: "bad name!" }], "invalid_room"],
    ["a room name of 65 characters", "join_chat", [{ chat_id: "r".repeat(65) }], "invalid_room"],
    ["an empty room name", "join_chat", [{ chat_id: "" }], "invalid_room"],
    ["someone else's pair room", "join_chat", [{ chat_id: dm }], "forbidden"],
    ["mark_read by a guest", "mark_read", [{ chat_id: "t8-a", seq: 1 }], "forbidden"],
  ];
  for (const [what, event, args, code] of cases) {
    assertErrorAck(await g.ask(event, ...args), code, `${event} with ${what} (ack)`);
  }
  for (const [what, event, args, code] of cases) {
    const from = g.mark();
    g.emit(event, ...args);
    const e = await g.waitFor("error", () => true, `the error event for ${event} with ${what}`, { from });
    assert.equal(e.code, code, `${event} with ${what} (error event): ${JSON.stringify(e)}`);
    assert.equal(typeof e.message, "string", `error message: ${JSON.stringify(e)}`);
    const room = args[0]?.chat_id;
    if (e.chat_id !== undefined && typeof room === "string") assert.equal(String(e.chat_id), room);
  }
  let from = g.mark();
  g.emit("no_such_event", { chat_id: "t8-a" });
  const unknown = await g.waitFor("error", () => true, "the error event for an unknown event", { from });
  assert.equal(unknown.code, "unknown_type", JSON.stringify(unknown));
  const leave = await g.ask("leave_chat", { chat_id: "t8-never-joined" });
  assert.ok(leave?.error?.code, `leave_chat of a room not joined answers an error: ${JSON.stringify(leave)}`);

  // 4000 characters (not bytes) is the limit, accepted
  const big = "é".repeat(4000);
  const bigAck = await g.send("t8-a", big);
  const bigMsg = await g.waitFor("new_message", (m) => m.seq === bigAck.seq, "the 4000-character message");
  assert.equal(bigMsg.body, big);

  // still connected, the joined room still works, another room works
  g.assertConnected();
  const still = await g.send("t8-a", "still here");
  await g.waitFor("new_message", (m) => m.room === "t8-a" && m.seq === still.seq, "the message after the errors");
  await g.join("t8-b");
  const other = await g.send("t8-b", "another room");
  assert.equal(other.seq, 1);
  await g.waitFor("new_message", (m) => m.room === "t8-b" && m.seq === other.seq, "the message in another room");
  g.assertConnected();
  // nothing refused was stored
  const h = await g.ask("history", { chat_id: "t8-a" });
  assert.deepEqual(
    h.messages.map((m) => m.body),
    [big, "still here"],
    "only the accepted messages are stored",
  );
});

test("refused inputs: 45 in a row keep the socket; a client that keeps at it is disconnected, as on our sockets", async () => {
  // docs/protocol.md: "a client that keeps sending refused events is disconnected" (the
  // native 1008 rule: about 50 refusals at once, 5 a second after that).
  const c = await sio("stubborn", { transports: ["websocket"], query: { name: "stubborn" } });
  await c.join("t8-stubborn");
  const from = c.mark();
  for (let i = 0; i < 45; i++) c.emit("join_chat", { chat_id: "bad name!" });
  await eventually(
    () => c.all("error", () => true, from).length >= 45 || c.disconnects.length > 0,
    "45 error events (or a disconnect)",
  );
  assert.deepEqual(c.disconnects, [], "45 refusals do not disconnect");
  assert.deepEqual(
    c.all("error", () => true, from).map((e) => e.code),
    Array(45).fill("invalid_room"),
  );
  const ack = await c.send("t8-stubborn", "still here");
  await c.waitFor("new_message", (m) => m.seq === ack.seq, "the message after 45 refusals");
  c.assertConnected();
  for (let i = 0; i < 30; i++) c.emit("join_chat", { chat_id: "bad name!" });
  await eventually(() => c.disconnects.length > 0, "the disconnect of an abusive client");
  // The server disconnects the socket from its namespace ("io server disconnect"). When more of
  // the client's events were already on their way, socketioxide answers the first one that
  // finds no socket by closing the whole transport ("transport close"), and which of the two
  // the client sees first depends on timing. Either way the server ended it: one disconnect,
  // and the client is not connected.
  assert.equal(c.disconnects.length, 1, `one disconnect: ${c.disconnects}`);
  assert.ok(
    ["io server disconnect", "transport close"].includes(c.disconnects[0]),
    `disconnected by the server: ${c.disconnects}`,
  );
});

test("rate limit: a burst over 40 is refused with rate_limited (ack and error event), not stored, and the socket recovers", async () => {
  const r = await sio("rate-ack", { query: { name: "rate-ack" } });
  await r.join("t8-rate");
  // At most the burst plus what 20/s refills while the server works through the 60 sends.
  const allowed = (startedAt) => 40 + Math.ceil(((Date.now() - startedAt) / 1000) * 20) + 1;
  let started = Date.now();
  const acks = await Promise.all(
    Array.from({ length: 60 }, (_, i) => r.ask("send_message", { chat_id: "t8-rate", conteudo: `burst ${i}` })),
  );
  const okMax = allowed(started);
  const ok = acks.filter((a) => Number.isInteger(a?.seq));
  const refused = acks.filter((a) => a?.error);
  assert.equal(ok.length + refused.length, 60, `every send answered: ${JSON.stringify(acks)}`);
  for (const a of refused) assertErrorAck(a, "rate_limited", "a send over the burst");
  assert.ok(ok.length >= 40 && ok.length <= okMax, `${ok.length} of 60 accepted (burst 40, 20/s: at most ${okMax})`);
  assert.ok(refused.length >= 1, "a burst of 60 is limited");
  const h = await httpHistory(server.url, "t8-rate", "?limit=200");
  assert.equal(h.messages.length, ok.length, "refused messages are not stored");
  assert.deepEqual(
    h.messages.map((m) => m.seq),
    ok.map((a) => a.seq).sort((x, y) => x - y),
  );

  const r2 = await sio("rate-event", { query: { name: "rate-event" } });
  await r2.join("t8-rate2");
  const from = r2.mark();
  started = Date.now();
  for (let i = 0; i < 60; i++) r2.emit("send_message", { chat_id: "t8-rate2", conteudo: `burst ${i}` });
  await r2.log.waitMany(
    (e) => (e.name === "new_message" && e.data?.room === "t8-rate2") || e.name === "error",
    60,
    "an outcome (new_message or error) for each of 60 sends",
    { from },
  );
  const storedMax = allowed(started);
  const errors = r2.all("error", () => true, from);
  const stored = r2.all("new_message", (m) => m.room === "t8-rate2", from);
  assert.equal(errors.length + stored.length, 60);
  assert.ok(errors.length >= 1, "a burst of 60 is limited");
  assert.ok(stored.length >= 40 && stored.length <= storedMax, `${stored.length} of 60 stored (at most ${storedMax})`);
  for (const e of errors) assert.equal(e.code, "rate_limited", JSON.stringify(e));

  // the bucket refills: sending works again on both sockets
  for (const [c, room] of [
    [r, "t8-rate"],
    [r2, "t8-rate2"],
  ]) {
    await eventually(async () => !(await c.ask("send_message", { chat_id: room, conteudo: "after the burst" })).error, `${c.label} can send again`);
    c.assertConnected();
  }
});

test("client_id is idempotent per user across sockets, reconnects and transports", async () => {
  const room = "t9-idem";
  const anaToken = issueToken(server.dataDir, "ana");
  const brunoToken = issueToken(server.dataDir, "bruno");
  const observer = await sio("observer-t9", { query: { name: "observer-t9" } });
  await observer.join(room);

  const c1 = await sio("ana socket 1", { auth: { token: anaToken }, transports: ["websocket"] });
  await c1.join(room);
  const first = await c1.send(room, "once", { client_id: "idem-1" });
  assert.equal(first.client_id, "idem-1");
  const again = await c1.send(room, "once", { client_id: "idem-1" });
  assert.equal(again.seq, first.seq, "the same socket resending");
  c1.close();

  const c2 = await sio("ana socket 2", { query: { token: anaToken }, transports: ["polling"] });
  await c2.join(room);
  const afterReconnect = await c2.send(room, "once", { client_id: "idem-1" });
  assert.equal(afterReconnect.seq, first.seq, "a new connection of the same user resending");
  assert.equal(afterReconnect.client_id, "idem-1");

  const n = await native("ana native", "/ws", { authorization: `Bearer ${anaToken}` });
  await n.join(room);
  const nAck = await n.sendMessage(room, "once", "idem-1");
  assert.equal(nAck.seq, first.seq, "the same user resending over native /ws");

  // another user's identical client_id is another message
  const b = await sio("bruno t9", { auth: { token: brunoToken } });
  await b.join(room);
  const other = await b.send(room, "once", { client_id: "idem-1" });
  assert.notEqual(other.seq, first.seq, "client ids are per sender");

  const marker = await c2.send(room, "marker");
  await observer.waitFor("new_message", (m) => m.seq === marker.seq, "the marker");
  const seen = observer.all("new_message", (m) => m.client_id === "idem-1" && m.sender?.id === ids.ana);
  assert.equal(seen.length, 1, `the room got ana's idem-1 once: ${JSON.stringify(seen)}`);
  assertNewMessage(seen[0], { room, seq: first.seq, body: "once", client_id: "idem-1", sender: ANA() });

  const viaAck = await c2.ask("history", { chat_id: room });
  assert.equal(viaAck.chat_id, room);
  assert.deepEqual(
    viaAck.messages.map((m) => [m.seq, m.sender.name, m.client_id ?? null]),
    [
      [first.seq, "Ana", "idem-1"],
      [other.seq, "Bruno", "idem-1"],
      [marker.seq, "Ana", null],
    ],
    "history over Socket.IO",
  );
  const viaHttp = await httpHistory(server.url, room);
  assert.deepEqual(
    viaHttp.messages.map((m) => m.seq),
    viaAck.messages.map((m) => m.seq),
    "history over HTTP",
  );
});

test("presence: one user_joined per user however many sockets, user_left when the last one goes", async () => {
  const room = "t11-presence";
  const token = issueToken(server.dataDir, "ana");
  const observer = await sio("observer-t11", { query: { name: "observer-t11" } });
  await observer.join(room);
  const from = observer.mark();
  const a1 = await sio("ana tab 1", { auth: { token } });
  await a1.join(room);
  const uj = await observer.waitFor("user_joined", (d) => d.user?.id === ids.ana, "ana joins", { from });
  assert.deepEqual({ chat_id: uj.chat_id, ...uj.user }, { chat_id: room, ...ANA() });
  const a2 = await sio("ana tab 2", { auth: { token } });
  const j2 = await a2.join(room);
  assert.equal(names(j2.online).filter((n) => n === "Ana").length, 1, `ana is online once: ${JSON.stringify(j2)}`);
  let barrier = await a2.send(room, "barrier 1");
  await observer.waitFor("new_message", (m) => m.seq === barrier.seq, "barrier 1");
  assert.equal(observer.all("user_joined", (d) => d.user?.id === ids.ana, from).length, 1, "one user_joined for two tabs");

  a1.close();
  barrier = await a2.send(room, "barrier 2");
  await observer.waitFor("new_message", (m) => m.seq === barrier.seq, "barrier 2");
  assert.deepEqual(observer.all("user_left", (d) => d.user?.id === ids.ana, from), [], "no user_left while a tab remains");

  assertLeft(await a2.ask("leave_chat", { chat_id: room }));
  const ul = await observer.waitFor("user_left", (d) => d.user?.id === ids.ana, "ana leaves", { from });
  assert.equal(ul.chat_id, room);
  assertErrorAck(await a2.ask("send_message", { chat_id: room, conteudo: "gone" }), "not_joined", "a send after leave_chat");

  // back in, then the connection closes without leave_chat: user_left all the same
  const back = observer.mark();
  await a2.join(room);
  await observer.waitFor("user_joined", (d) => d.user?.id === ids.ana, "ana joins again", { from: back });
  a2.close();
  await observer.waitFor("user_left", (d) => d.user?.id === ids.ana, "user_left when ana's last socket closes", { from: back });
});

test("with --allow-guests false a guest is refused at connect, a user is not", async () => {
  const closed = await startServer({ args: ["--allow-guests", "false"] });
  try {
    closed.addUser("ana", "Ana", "tutor", PW);
    const token = issueToken(closed.dataDir, "ana");
    for (const [label, opts] of [
      ["guest by query.name", { query: { name: "visitante" } }],
      ["guest by auth.name", { auth: { name: "visitante" } }],
      ["guest without a name", {}],
    ]) {
      const err = await refusedSio(closed.url, label, opts);
      assert.ok(err instanceof Error && err.message, `${label}: connect_error with a message`);
    }
    const user = await connectSio(closed.url, "ana with a token", { auth: { token } });
    try {
      await user.join("closed-room");
      const ack = await user.send("closed-room", "members only");
      assert.equal(ack.seq, 1);
    } finally {
      user.close();
    }
  } finally {
    await closed.stop();
  }
});

test("the server's pair policy applies to Socket.IO joins", async () => {
  const clinic = await startServer({ args: ["--pair-policy", "roles:tutor=vet"] });
  try {
    const tutor = clinic.addUser("tina", "Tina", "tutor", PW);
    const vet = clinic.addUser("victor", "Victor", "vet", PW);
    const other = clinic.addUser("tomas", "Tomas", "tutor", PW);
    const asUser = async (username) => {
      const { cookie } = await login(clinic.url, username, PW);
      const c = await connectSio(clinic.url, username, { extraHeaders: { cookie } });
      open.push(c);
      return c;
    };
    const tina = await asUser("tina");
    const ok = await tina.ask("join_chat", { chat_id: pairRoom(tutor, vet) });
    assert.equal(ok.chat_id, pairRoom(tutor, vet), JSON.stringify(ok));
    const tomas = await asUser("tomas");
    assertErrorAck(await tomas.ask("join_chat", { chat_id: pairRoom(tutor, other) }), "forbidden", "two tutors");
  } finally {
    await clinic.stop();
  }
});

