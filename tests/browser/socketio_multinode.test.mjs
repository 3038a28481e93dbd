// Two chat-server nodes sharing Redis (the channel layer) and one PostgreSQL database (the
// store): Socket.IO clients on both nodes and a native /ws client chat in one room with one
// sequence. Needs Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 (user postgres,
// trust auth), as ./scripts/services starts them; without them this test FAILS, it never skips.
import { after, afterEach, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import net from "node:net";
import { startServer } from "./harness.mjs";
import {
  Native,
  addUser,
  assertNewMessage,
  connectSio,
  httpHistory,
  issueToken,
  within,
  wsUrl,
} from "./sio_helpers.mjs";

const PW = "correct horse battery";
const RUN = `${process.pid}_${Date.now().toString(36)}`;
const DB = `sio_multinode_${RUN}`;
const DB_URL = `postgres://postgres@127.0.0.1:5432/${DB}`;
const PREFIX = `sio-test-${RUN}`;
const FLAGS = ["--redis-url", "redis://127.0.0.1:6379", "--redis-prefix", PREFIX, "--database-url", DB_URL];

let nodeA;
let nodeB;
let dbCreated = false;
const ids = {};
const tokens = {};
const open = [];

function psql(sql) {
  const r = spawnSync("psql", ["-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql], {
    encoding: "utf8",
    timeout: 30_000,
  });
  if (r.error || r.status !== 0) {
    throw new Error(
      `PostgreSQL on 127.0.0.1:5432 (user postgres) is required for this test; \`psql -c "${sql}"\` failed: ` +
        (r.error?.message ?? r.stderr),
    );
  }
}

async function redisPing() {
  const answer = await within(
    new Promise((ok, fail) => {
      const s = net.connect(6379, "127.0.0.1", () => s.write("PING\r\n"));
      s.once("data", (d) => {
        ok(d.toString());
        s.destroy();
      });
      s.once("error", fail);
    }),
    "Redis on 127.0.0.1:6379 to answer PING",
    5_000,
  ).catch((e) => {
    throw new Error(`Redis on 127.0.0.1:6379 is required for this test: ${e.message}`);
  });
  assert.match(answer, /^\+PONG/, `Redis on 127.0.0.1:6379 answered PING with ${JSON.stringify(answer)}`);
}

before(async () => {
  await redisPing();
  psql(`CREATE DATABASE ${DB}`);
  dbCreated = true;
  nodeA = await startServer({ args: FLAGS });
  // The second node shares the data directory, so the secret key (sessions, tokens).
  nodeB = await startServer({ dataDir: nodeA.dataDir, args: FLAGS });
  const db = ["--database-url", DB_URL];
  ids.ana = addUser(nodeA.dataDir, "ana", "Ana", "tutor", PW, db);
  ids.bruno = addUser(nodeA.dataDir, "bruno", "Bruno", "vet", PW, db);
  tokens.ana = issueToken(nodeA.dataDir, "ana", db);
  tokens.bruno = issueToken(nodeA.dataDir, "bruno", db);
});

afterEach(() => {
  for (const c of open.splice(0)) c.close();
});

/// Deletes what the run left under its Redis prefix (the nodes keep a hash of user profiles
/// there). Best effort: a cleanup, not a check.
function redisCleanup() {
  const keys = spawnSync("redis-cli", ["-h", "127.0.0.1", "-p", "6379", "--scan", "--pattern", `${PREFIX}*`], {
    encoding: "utf8",
    timeout: 10_000,
  });
  const list = (keys.stdout || "").split("\n").filter((k) => k.startsWith(PREFIX));
  if (list.length) spawnSync("redis-cli", ["-h", "127.0.0.1", "-p", "6379", "del", ...list], { timeout: 10_000 });
}

after(async () => {
  await nodeB?.stop();
  await nodeA?.stop();
  redisCleanup();
  if (dbCreated) psql(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
});

async function sio(node, label, opts) {
  const c = await connectSio(node.url, label, opts);
  open.push(c);
  return c;
}

async function native(node, label, path, headers) {
  const n = await Native.open(wsUrl(node.url, path), label, headers);
  open.push(n);
  return n;
}

const ANA = () => ({ id: ids.ana, name: "Ana", role: "tutor" });
const BRUNO = () => ({ id: ids.bruno, name: "Bruno", role: "vet" });

test("two nodes with Redis and PostgreSQL: Socket.IO on A, Socket.IO and native on B, one room, one sequence", async () => {
  const room = "mn-lobby";
  const onA = await sio(nodeA, "sio guest on A", { transports: ["websocket"], query: { name: "sio-a" } });
  const onB = await sio(nodeB, "sio ana on B", { transports: ["polling"], auth: { token: tokens.ana } });
  const nB = await native(nodeB, "native guest on B", "/ws?name=nat-b");

  await onA.join(room);
  const fromA = onA.mark();
  await onB.join(room);
  const joined = await nB.join(room);
  const online = joined.online.map((u) => u.name).sort();
  for (const n of ["Ana", "nat-b", "sio-a"]) assert.ok(online.includes(n), `${n} online across nodes: ${JSON.stringify(joined)}`);
  const ujAna = await onA.waitFor("user_joined", (d) => d.user?.id === ids.ana, "user_joined on A for ana on B", { from: fromA });
  assert.equal(ujAna.chat_id, room);
  await onA.waitFor("user_joined", (d) => d.user?.name === "nat-b", "user_joined on A for the native user on B", { from: fromA });

  // A -> everyone
  const a1 = await onA.send(room, "from A", { client_id: "mn-a1" });
  const mB = await onB.waitFor("new_message", (m) => m.seq === a1.seq, "A's message on B (Socket.IO)");
  assertNewMessage(mB, { room, seq: a1.seq, body: "from A", client_id: "mn-a1", sender: { name: "sio-a", guest: true } });
  const nfA = await nB.waitFor("message", (f) => f.seq === a1.seq, "A's message on B (native)");
  assert.equal(nfA.body, "from A");
  assert.equal(nfA.sent_at, mB.sent_at);

  // B (Socket.IO, a user) -> everyone
  const b1 = await onB.send(room, "from B", { client_id: "mn-b1" });
  assert.equal(b1.seq, a1.seq + 1, "one gap-free sequence across nodes");
  const mA = await onA.waitFor("new_message", (m) => m.seq === b1.seq, "B's message on A");
  assertNewMessage(mA, { room, seq: b1.seq, body: "from B", client_id: "mn-b1", sender: ANA() });
  assert.equal((await nB.waitFor("message", (f) => f.seq === b1.seq, "B's message on native B")).sender.id, ids.ana);

  // B (native) -> everyone
  const n1 = await nB.sendMessage(room, "from native B", "mn-n1");
  assert.equal(n1.seq, b1.seq + 1);
  for (const c of [onA, onB]) {
    const m = await c.waitFor("new_message", (m) => m.seq === n1.seq, `the native message on ${c.label}`);
    assertNewMessage(m, { room, seq: n1.seq, body: "from native B", client_id: "mn-n1", sender: { name: "nat-b", guest: true } });
  }
  for (const c of [onA, onB]) {
    assert.deepEqual(
      c.all("new_message", (m) => m.room === room).map((m) => m.seq),
      [a1.seq, b1.seq, n1.seq],
      `${c.label}: every message once, in order`,
    );
  }
  await nB.waitFor("message", (f) => f.seq === n1.seq, "native's own message");
  assert.deepEqual(
    nB.all("message", (f) => f.room === room).map((f) => f.seq),
    [a1.seq, b1.seq, n1.seq],
  );

  // typing across nodes
  let from = onB.mark();
  onA.emit("typing_start", { chat_id: room });
  const typing = await onB.waitFor("user_typing", (d) => d.user?.name === "sio-a" && d.typing === true, "typing from A on B", { from });
  assert.equal(typing.chat_id, room);
  from = nB.mark();
  onA.emit("typing_stop", { chat_id: room });
  await nB.waitFor("typing", (f) => f.user?.name === "sio-a" && f.active === false, "typing stop from A on native B", { from });

  // the same user resending the same client_id on the other node: one message
  const anaOnA = await sio(nodeA, "sio ana on A", { query: { token: tokens.ana } });
  await anaOnA.join(room);
  const again = await anaOnA.send(room, "from B", { client_id: "mn-b1" });
  assert.equal(again.seq, b1.seq, "client_id is idempotent across nodes");

  // resume across nodes: a client on B catches up on what was said on A
  const late = await sio(nodeB, "late on B", { query: { name: "late-b" } });
  from = late.mark();
  const jl = await late.join(room, { since: a1.seq });
  assert.equal(jl.last_seq, n1.seq);
  const replay = await late.waitForCount("new_message", (m) => m.room === room, 2, "the replay on B", { from });
  assert.deepEqual(
    replay.map((m) => m.seq),
    [b1.seq, n1.seq],
  );
  const a2 = await onA.send(room, "live after the replay");
  await late.waitFor("new_message", (m) => m.seq === a2.seq, "live message from A on B", { from });
  assert.deepEqual(
    late.all("new_message", (m) => m.room === room, from).map((m) => m.seq),
    [b1.seq, n1.seq, a2.seq],
  );

  // one history, whichever node answers
  const hA = await httpHistory(nodeA.url, room);
  const hB = await httpHistory(nodeB.url, room);
  assert.deepEqual(
    hA.messages.map((m) => [m.seq, m.body]),
    [
      [a1.seq, "from A"],
      [b1.seq, "from B"],
      [n1.seq, "from native B"],
      [a2.seq, "live after the replay"],
    ],
  );
  assert.deepEqual(hB, hA);
  for (const c of [onA, onB, late, anaOnA]) c.assertConnected();
});

test("two nodes: a pair room with one member on each node", async () => {
  const dm = `dm_${Math.min(ids.ana, ids.bruno)}_${Math.max(ids.ana, ids.bruno)}`;
  const ana = await sio(nodeA, "ana on A", { auth: { token: tokens.ana } });
  const bruno = await sio(nodeB, "bruno on B", { transports: ["websocket"], query: { token: tokens.bruno } });
  await ana.join(dm);
  await bruno.join(dm);
  const ack = await bruno.send(dm, "private, across nodes");
  const m = await ana.waitFor("new_message", (m) => m.room === dm && m.seq === ack.seq, "the private message on A");
  assertNewMessage(m, { room: dm, seq: ack.seq, body: "private, across nodes", sender: BRUNO() });
  const from = bruno.mark();
  ana.emit("mark_read", { chat_id: dm, seq: ack.seq });
  const read = await bruno.waitFor("message_read", (d) => d.chat_id === dm, "ana's read receipt on B", { from });
  assert.equal(read.seq, ack.seq);
  assert.equal(read.user?.id, ids.ana);
  const guest = await sio(nodeB, "guest on B", { query: { name: "intruder" } });
  const refused = await guest.ask("join_chat", { chat_id: dm });
  assert.equal(refused?.error?.code, "forbidden", JSON.stringify(refused));
});
