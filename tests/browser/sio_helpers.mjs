// Helpers for the Socket.IO end-to-end tests: Socket.IO clients that record every event, a
// native /ws client, bounded waits, logins, tokens and the chat-server CLI. Every wait is on an
// event, an ack or a condition, bounded by a timeout that fails with what was expected and what
// was seen.
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import WebSocket from "ws";

const ROOT = resolve(import.meta.dirname, "..", "..");
export const BIN = process.env.CHAT_SERVER_BIN || join(ROOT, "target", "debug", "chat-server");
export const WAIT_MS = 10_000;

const short = (v) => {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 300 ? s.slice(0, 300) + "…" : s;
};

/// `promise`, or a rejection naming `what` after `ms`.
export function within(promise, what, ms = WAIT_MS) {
  let timer;
  const timeout = new Promise((_, fail) => {
    timer = setTimeout(() => fail(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/// Polls `check` (a condition, not a sleep) until it is true, failing after `ms`.
export async function eventually(check, what, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/// A log of received items with waits on it. `describe` renders the log for failure messages.
class Log {
  constructor(label) {
    this.label = label;
    this.items = [];
    this.waiters = new Set();
  }
  push(item) {
    this.items.push(item);
    for (const w of [...this.waiters]) w();
  }
  mark() {
    return this.items.length;
  }
  /// The first `count` items at index >= `from` matching `pred`, waiting for them.
  async waitMany(pred, count, what, { from = 0, ms = WAIT_MS } = {}) {
    const found = () => this.items.slice(from).filter(pred);
    if (found().length >= count) return found().slice(0, count);
    let waiter;
    try {
      return await within(
        new Promise((ok) => {
          waiter = () => {
            const f = found();
            if (f.length >= count) ok(f.slice(0, count));
          };
          this.waiters.add(waiter);
        }),
        `${this.label}: ${what}`,
        ms,
      );
    } catch (e) {
      e.message += `\n  ${this.label} received (from #${from}): ${this.describe(from)}`;
      throw e;
    } finally {
      this.waiters.delete(waiter);
    }
  }
  async waitOne(pred, what, opts) {
    return (await this.waitMany(pred, 1, what, opts))[0];
  }
  describe(from = 0) {
    const rest = this.items.slice(from);
    if (rest.length === 0) return "nothing";
    const shown = rest.slice(-40).map(short).join("\n    ");
    return `${rest.length} item(s)${rest.length > 40 ? " (last 40)" : ""}:\n    ${shown}`;
  }
}

/// A Socket.IO client: `socket`, every received event in `log` (`{name, data}`), waits and
/// acks. Never reconnects by itself; every client is its own connection (`forceNew`).
export class Sio {
  constructor(socket, label) {
    this.socket = socket;
    this.label = label;
    this.log = new Log(label);
    this.disconnects = [];
    socket.onAny((name, ...args) => this.log.push({ name, data: args[0], extra: args.slice(1) }));
    socket.on("disconnect", (reason) => this.disconnects.push(reason));
  }

  get transport() {
    return this.socket.io.engine?.transport?.name;
  }

  mark() {
    return this.log.mark();
  }

  /// The payloads of every `name` event received so far (from index `from`).
  all(name, pred = () => true, from = 0) {
    return this.log.items.slice(from).filter((e) => e.name === name && pred(e.data)).map((e) => e.data);
  }

  async waitFor(name, pred = () => true, what = name, opts) {
    const e = await this.log.waitOne((e) => e.name === name && pred(e.data), what, opts);
    return e.data;
  }

  async waitForCount(name, pred, count, what = name, opts) {
    const es = await this.log.waitMany((e) => e.name === name && pred(e.data), count, what, opts);
    return es.map((e) => e.data);
  }

  /// Emits with an ack callback and returns the ack's first argument. `args` are the payload
  /// arguments, possibly none.
  async ask(event, ...args) {
    try {
      return await this.socket.timeout(WAIT_MS).emitWithAck(event, ...args);
    } catch (e) {
      throw new Error(
        `${this.label}: no ack for ${event} ${args.map(short).join(" ")} within ${WAIT_MS} ms (${e.message});` +
          ` connected=${this.socket.connected}, disconnects=${short(this.disconnects)};` +
          ` received: ${this.log.describe(Math.max(0, this.log.items.length - 10))}`,
      );
    }
  }

  emit(event, ...args) {
    this.socket.emit(event, ...args);
  }

  /// Joins and checks the ack is not an error.
  async join(chatId, extra = {}) {
    const ack = await this.ask("join_chat", { chat_id: chatId, ...extra });
    assert.ok(ack && !ack.error, `${this.label}: join_chat ${short(chatId)} refused: ${short(ack)}`);
    return ack;
  }

  /// Sends and checks the ack carries a seq.
  async send(chatId, conteudo, extra = {}) {
    const ack = await this.ask("send_message", { chat_id: chatId, conteudo, ...extra });
    assert.ok(
      ack && !ack.error && Number.isInteger(ack.seq),
      `${this.label}: send_message ${short(conteudo)} to ${short(chatId)} got no seq: ${short(ack)}`,
    );
    return ack;
  }

  /// Asserts the socket was never disconnected.
  assertConnected() {
    assert.equal(this.socket.connected, true, `${this.label} is no longer connected`);
    assert.deepEqual(this.disconnects, [], `${this.label} was disconnected`);
  }

  close() {
    this.socket.disconnect();
  }
}

/// `ns` picks the namespace; `onSocket` sees the socket right after it is created (before any
/// transport event), the rest are socket.io-client options.
function sioSocket(url, { ns = "/chat", onSocket, ...opts } = {}) {
  const socket = io(url + ns, { forceNew: true, reconnection: false, timeout: WAIT_MS, ...opts });
  onSocket?.(socket);
  return socket;
}

/// Connects a Socket.IO client (namespace `/chat` unless `ns` says otherwise) and waits for
/// `connect`; a `connect_error` fails with its message.
export async function connectSio(url, label, opts = {}) {
  const socket = sioSocket(url, opts);
  const client = new Sio(socket, label);
  try {
    await within(
      new Promise((ok, fail) => {
        socket.once("connect", ok);
        socket.once("connect_error", (e) =>
          fail(new Error(`${label}: connect_error ${e.message} ${short(e.data ?? e.description ?? "")}`)),
        );
      }),
      `${label} to connect`,
    );
  } catch (e) {
    socket.disconnect();
    throw e;
  }
  return client;
}

/// Expects the connection to be refused: returns the `connect_error` error; fails if the
/// socket connects.
export async function refusedSio(url, label, opts = {}) {
  const socket = sioSocket(url, opts);
  try {
    return await within(
      new Promise((ok, fail) => {
        socket.once("connect", () => fail(new Error(`${label}: connected (id ${socket.id}) but should have been refused`)));
        socket.once("connect_error", ok);
      }),
      `${label} to be refused with connect_error`,
    );
  } finally {
    socket.disconnect();
  }
}

/// A native client of the multiplexed socket `GET /ws`.
export class Native {
  constructor(ws, label) {
    this.ws = ws;
    this.label = label;
    this.log = new Log(label);
    this.closed = null;
    ws.on("message", (data) => this.log.push(JSON.parse(data.toString())));
    ws.on("close", (code, reason) => (this.closed = { code, reason: reason.toString() }));
  }

  static async open(url, label, headers = {}) {
    const ws = new WebSocket(url, { headers });
    const native = new Native(ws, label);
    await within(
      new Promise((ok, fail) => {
        ws.once("open", ok);
        ws.once("unexpected-response", (_req, res) => fail(new Error(`${label}: handshake refused with HTTP ${res.statusCode}`)));
        ws.once("error", fail);
      }),
      `${label} to open ${url}`,
    );
    return native;
  }

  mark() {
    return this.log.mark();
  }

  send(frame) {
    this.ws.send(JSON.stringify(frame));
  }

  async waitFor(type, pred = () => true, what = type, opts) {
    return this.log.waitOne((f) => f.type === type && pred(f), what, opts);
  }

  all(type, pred = () => true, from = 0) {
    return this.log.items.slice(from).filter((f) => f.type === type && pred(f));
  }

  async join(room, extra = {}) {
    const from = this.mark();
    this.send({ type: "join", room, ...extra });
    const f = await this.log.waitOne(
      (f) => (f.type === "joined" || f.type === "error") && f.room === room,
      `joined ${room}`,
      { from },
    );
    assert.equal(f.type, "joined", `${this.label}: join ${room} refused: ${short(f)}`);
    return f;
  }

  async sendMessage(room, body, client_id) {
    const from = this.mark();
    this.send({ type: "message", room, body, ...(client_id ? { client_id } : {}) });
    const f = await this.log.waitOne(
      (f) => (f.type === "ack" || f.type === "error") && f.room === room,
      `ack of ${short(body)} in ${room}`,
      { from },
    );
    assert.equal(f.type, "ack", `${this.label}: message ${short(body)} refused: ${short(f)}`);
    return f;
  }

  close() {
    this.ws.close();
  }
}

export const wsUrl = (httpUrl, path) => httpUrl.replace(/^http/, "ws") + path;

/// POST /login with JSON: `{session, cookie}` (the cookie as `chat_session=…`).
export async function login(url, username, password) {
  const res = await fetch(url + "/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username, password }),
  });
  const text = await res.text();
  assert.equal(res.status, 200, `login ${username}: ${res.status} ${text}`);
  const session = JSON.parse(text).session;
  assert.equal(typeof session, "string", `login ${username}: no session in ${text}`);
  const cookie = res.headers
    .getSetCookie()
    .map((c) => c.split(";")[0])
    .find((c) => c.startsWith("chat_session="));
  assert.ok(cookie, `login ${username}: no chat_session cookie`);
  return { session, cookie };
}

function cliEnv() {
  const env = { ...process.env, CHAT_LOG: "warn" };
  delete env.DATABASE_URL;
  delete env.REDIS_URL;
  delete env.CHAT_COMPAT;
  return env;
}

/// Runs `chat-server ARGS --data-dir DIR EXTRA` and returns its standard output.
export function cli(dataDir, args, { extra = [], input } = {}) {
  const r = spawnSync(BIN, [...args, "--data-dir", dataDir, ...extra], {
    input,
    env: cliEnv(),
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`chat-server ${args.join(" ")} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/// `chat-server user add` (with `extra` flags such as `--database-url`): the new user's id.
export function addUser(dataDir, username, name, role, password, extra = []) {
  const out = cli(dataDir, ["user", "add", "--username", username, "--name", name, "--role", role], {
    extra,
    input: password + "\n",
  });
  return Number(out.match(/\(id (\d+)/)[1]);
}

/// `chat-server token issue --user U --ttl 1h`: a bearer token.
export function issueToken(dataDir, username, extra = []) {
  const token = cli(dataDir, ["token", "issue", "--user", username, "--ttl", "1h"], { extra }).trim();
  assert.ok(token.length > 10, `no token printed for ${username}: ${short(token)}`);
  return token;
}

/// GET /api/rooms/<room>/messages (JSON), failing on a non-200 answer.
export async function httpHistory(url, room, query = "", headers = {}) {
  const res = await fetch(`${url}/api/rooms/${room}/messages${query}`, { headers });
  const text = await res.text();
  assert.equal(res.status, 200, `GET history of ${room}: ${res.status} ${text}`);
  return JSON.parse(text);
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

/// Checks a `new_message` payload speaks both vocabularies consistently, then the expected
/// fields: `room`, `seq`, `body`, `client_id`, and `sender` (compared field by field: `name`,
/// and `id`/`role` when given; `guest: true` means no user id and a guest id).
export function assertNewMessage(m, expect = {}) {
  const show = short(m);
  assert.ok(m && typeof m === "object", `new_message payload is not an object: ${show}`);
  assert.ok(Number.isInteger(m.seq) && m.seq > 0, `seq is not a positive integer: ${show}`);
  assert.equal(typeof m.room, "string", `room missing: ${show}`);
  assert.equal(String(m.chat_id), m.room, `chat_id and room differ: ${show}`);
  assert.equal(typeof m.body, "string", `body missing: ${show}`);
  assert.equal(m.conteudo, m.body, `conteudo and body differ: ${show}`);
  assert.ok(m.sender && typeof m.sender.name === "string", `sender.name missing: ${show}`);
  assert.ok(m.remetente && typeof m.remetente === "object", `remetente missing: ${show}`);
  assert.equal(m.remetente.nome, m.sender.name, `remetente.nome and sender.name differ: ${show}`);
  assert.equal(m.remetente.id ?? null, m.sender.id ?? null, `remetente.id and sender.id differ: ${show}`);
  assert.equal(m.remetente.tipo || null, m.sender.role || null, `remetente.tipo and sender.role differ: ${show}`);
  assert.ok("id" in m.remetente && "tipo" in m.remetente, `remetente lacks id or tipo: ${show}`);
  assert.match(String(m.sent_at), RFC3339, `sent_at is not RFC 3339: ${show}`);
  assert.ok(!Number.isNaN(Date.parse(m.sent_at)), `sent_at does not parse: ${show}`);
  assert.equal(m.data_envio, m.sent_at, `data_envio and sent_at differ: ${show}`);
  if ("room" in expect) assert.equal(m.room, expect.room, `room: ${show}`);
  if ("seq" in expect) assert.equal(m.seq, expect.seq, `seq: ${show}`);
  if ("body" in expect) assert.equal(m.body, expect.body, `body: ${show}`);
  if ("client_id" in expect) assert.equal(m.client_id, expect.client_id, `client_id: ${show}`);
  const s = expect.sender;
  if (s) {
    if (s.name instanceof RegExp) assert.match(m.sender.name, s.name, `sender.name: ${show}`);
    else if ("name" in s) assert.equal(m.sender.name, s.name, `sender.name: ${show}`);
    if ("id" in s) assert.equal(m.sender.id, s.id, `sender.id: ${show}`);
    if ("role" in s) assert.equal(m.sender.role, s.role, `sender.role: ${show}`);
    if (s.guest) {
      assert.equal(m.sender.id ?? null, null, `a guest has no id: ${show}`);
      assert.match(String(m.sender.guest), /^[0-9a-f]{16}$/, `a guest has a guest id: ${show}`);
    }
  }
}

/// Asserts an ack is `{error:{code,message}}` with `code`.
export function assertErrorAck(ack, code, what) {
  assert.ok(
    ack && ack.error && typeof ack.error === "object",
    `${what}: expected an error ack with code ${code}, got ${short(ack)}`,
  );
  assert.equal(ack.error.code, code, `${what}: error code in ${short(ack)}`);
  assert.equal(typeof ack.error.message, "string", `${what}: error message in ${short(ack)}`);
}

/// The ```javascript block under "Conectar via JavaScript" in seed 001, as printed.
export function seed001Snippet() {
  // Verbatim copies of the tutorials live beside the tests.
  const candidates = [process.env.CHAT_SEEDS_DIR, resolve(import.meta.dirname, "seeds")].filter(Boolean);
  for (const d of candidates) {
    let files;
    try {
      files = readdirSync(d).filter((f) => f.startsWith("001_") && f.endsWith(".txt"));
    } catch {
      continue;
    }
    if (files.length === 0) continue;
    const text = readFileSync(join(d, files[0]), "utf8");
    const at = text.indexOf("Conectar via JavaScript");
    assert.ok(at >= 0, `no "Conectar via JavaScript" section in ${files[0]}`);
    const m = text.slice(at).match(/```javascript\n([\s\S]*?)```/);
    assert.ok(m, `no javascript block after "Conectar via JavaScript" in ${files[0]}`);
    return m[1];
  }
  throw new Error(`seed 001 not found in ${candidates.join(", ")}`);
}
