// The chat web client. Plain JS, no build step. Everything user-provided is rendered with
// textContent, never as HTML.
"use strict";

const ROOM_RE = /^[A-Za-z0-9_-]{1,64}$/;
const NAME_KEY = "chat.name";

function $(id) {
  return document.getElementById(id);
}

function validRoom(name) {
  if (!ROOM_RE.test(name)) {
    return "Room names use only letters, digits, '-' and '_' (1–64 characters).";
  }
  if (name.startsWith("dm_")) {
    return "Names starting with 'dm_' are reserved for private rooms.";
  }
  return null;
}

function savedName() {
  try {
    return localStorage.getItem(NAME_KEY) || "";
  } catch (_) {
    return "";
  }
}

function saveName(name) {
  try {
    localStorage.setItem(NAME_KEY, name);
  } catch (_) {
    /* private mode: keep it for this page only */
  }
}

function randomId() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return Math.random().toString(36).slice(2) + Date.now().toString(36);
}

async function fetchMe() {
  try {
    const res = await fetch("/api/me");
    return res.ok ? await res.json() : null;
  } catch (_) {
    return null;
  }
}

function label(user) {
  return user.role ? user.name + " (" + user.role + ")" : user.name;
}

// ---------------------------------------------------------------- index page

async function showAccount() {
  const me = await fetchMe();
  if (!me) {
    $("login-link").hidden = false;
    return;
  }
  $("whoami").textContent = "Logged in as " + label(me);
  $("whoami").hidden = false;
  $("logout-form").hidden = false;
  $("display-name").value = me.name;
  $("display-name").disabled = true;
  let contacts = [];
  try {
    const res = await fetch("/api/contacts");
    if (res.ok) contacts = await res.json();
  } catch (_) {
    /* the room chooser still works */
  }
  const list = $("contacts");
  for (const c of contacts) {
    const li = document.createElement("li");
    li.setAttribute("data-testid", "contact");
    li.dataset.userId = String(c.id);
    const a = document.createElement("a");
    a.href = "/dm/" + c.id + "/";
    a.textContent = label(c);
    li.appendChild(a);
    if (c.unread > 0) {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.setAttribute("data-testid", "unread");
      badge.textContent = String(c.unread);
      li.appendChild(badge);
    }
    list.appendChild(li);
  }
  $("no-contacts").hidden = contacts.length > 0;
  $("account").hidden = false;
}

// ---------------------------------------------------------------- login page

function nextTarget() {
  const next = new URLSearchParams(window.location.search).get("next") || "/";
  // Browsers drop tabs and line breaks from URLs and read "\\" as "/": "/\t/evil.example"
  // or "/\\evil.example" would leave the site.
  const local = next.startsWith("/") && !next.startsWith("//") && !/[\s\\\u0000-\u001f\u007f]/.test(next);
  return local ? next : "/";
}

async function postJson(url, body) {
  const res = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  let data = {};
  try {
    data = await res.json();
  } catch (_) {
    /* no body */
  }
  return { ok: res.ok, data: data };
}

function bindAccountForm(formId, errorId, url, fields) {
  const form = $(formId);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = {};
    for (const [key, id] of Object.entries(fields)) body[key] = $(id).value;
    const { ok, data } = await postJson(url, body);
    if (ok) {
      window.location.assign(nextTarget());
      return;
    }
    const err = $(errorId);
    err.textContent = (data.error && data.error.message) || "Something went wrong; try again.";
    err.hidden = false;
  });
}

async function initLogin() {
  $("login-next").value = nextTarget();
  bindAccountForm("login-form", "login-error", "/login", {
    username: "login-username",
    password: "login-password",
  });
  bindAccountForm("register-form", "register-error", "/register", {
    username: "reg-username",
    name: "reg-name",
    password: "reg-password",
  });
  try {
    const res = await fetch("/api/config");
    if (res.ok && (await res.json()).allow_registration) $("register").hidden = false;
  } catch (_) {
    /* registration stays hidden */
  }
}

// A name to suggest: "guest-" and 6 random hex digits (16.7 million, so two guests rarely
// share one). Names only help people tell guests apart; the server knows a guest by the
// guest id of its cookie, which the page never sees.
function randomGuestName() {
  const bytes = new Uint8Array(3);
  crypto.getRandomValues(bytes);
  return "guest-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// Who a user object is: users by id, guests by their guest id (two guests may share a name).
function userKey(u) {
  if (u.id !== undefined && u.id !== null) return "u:" + u.id;
  if (u.guest) return "g:" + u.guest;
  return "n:" + u.name;
}

function initIndex() {
  showAccount();
  const form = $("room-form");
  const room = $("room-name");
  const name = $("display-name");
  const error = $("room-error");
  name.value = savedName() || randomGuestName();
  room.addEventListener("input", () => {
    error.hidden = true;
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const value = room.value.trim() || "lobby";
    const problem = validRoom(value);
    if (problem) {
      error.textContent = problem;
      error.hidden = false;
      room.focus();
      return;
    }
    const who = name.value.trim();
    if (who) saveName(who.slice(0, 64));
    window.location.assign("/chat/" + encodeURIComponent(value) + "/");
  });
}

// ---------------------------------------------------------------- room page

function roomFromPath() {
  const m = window.location.pathname.match(/^\/chat\/([^/]+)\/?$/);
  return m ? decodeURIComponent(m[1]) : "";
}

/**
 * Groups a message with the one before it: the same sender within the same minute shows no
 * name and time again (`continued`), and the first message of a day carries its date
 * (`data-day`, drawn as a separator by the style sheet).
 */
function regroup(li) {
  const prev = li.previousElementSibling;
  const at = li.dataset.sentAt ? new Date(li.dataset.sentAt) : null;
  const prevAt = prev && prev.dataset.sentAt ? new Date(prev.dataset.sentAt) : null;
  const day = (d) => (d ? d.toDateString() : "");
  const minute = (d) => (d ? Math.floor(d.getTime() / 60000) : NaN);
  const continued =
    !!at && !!prevAt && prev.dataset.sender === li.dataset.sender && minute(prevAt) === minute(at);
  li.classList.toggle("continued", continued);
  if (at && day(at) !== day(prevAt)) {
    li.dataset.day = at.toLocaleDateString([], { weekday: "short", day: "numeric", month: "short", year: "numeric" });
  } else {
    delete li.dataset.day;
  }
}

/** How often the sidebar's conversations (and their unread counts) are read again. */
const SIDEBAR_REFRESH_MS = 15000;

/** How often a client on long-poll tries its WebSocket again. */
const POLL_MODE_SOCKET_RETRY_MS = 5000;

/** A short, quiet two-tone chime (no audio file to fetch). Counted in `data-chimes` on <body>. */
function beep() {
  document.body.dataset.chimes = String(Number(document.body.dataset.chimes || 0) + 1);
  try {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    const ctx = beep.ctx || (beep.ctx = new Ctx());
    const now = ctx.currentTime;
    [880, 1320].forEach((freq, i) => {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, now + i * 0.12);
      gain.gain.exponentialRampToValueAtTime(0.08, now + i * 0.12 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + i * 0.12 + 0.15);
      osc.connect(gain).connect(ctx.destination);
      osc.start(now + i * 0.12);
      osc.stop(now + i * 0.12 + 0.16);
    });
  } catch (_) {
    /* a browser that will not play without a gesture stays silent */
  }
}

/** A file on a message: pictures shown (scaled by the style sheet), the rest a download link. */
function attachmentElement(a) {
  const href = "/api/attachments/" + encodeURIComponent(a.id);
  const box = document.createElement("div");
  box.className = "attachment";
  if (/^image\//.test(a.content_type)) {
    const link = document.createElement("a");
    link.href = href;
    link.target = "_blank";
    link.rel = "noopener";
    const img = document.createElement("img");
    img.src = href;
    img.alt = a.name;
    img.loading = "lazy";
    img.setAttribute("data-testid", "attachment-image");
    link.appendChild(img);
    box.appendChild(link);
  } else {
    const link = document.createElement("a");
    link.href = href;
    link.download = a.name;
    link.textContent = a.name + " (" + sizeOf(a.size) + ")";
    link.setAttribute("data-testid", "attachment-link");
    box.appendChild(link);
  }
  return box;
}

function sizeOf(bytes) {
  if (bytes < 1024) return bytes + " B";
  if (bytes < 1024 * 1024) return Math.round(bytes / 1024) + " KB";
  return (bytes / (1024 * 1024)).toFixed(1) + " MB";
}

function timeOf(iso) {
  const d = new Date(iso);
  if (isNaN(d.getTime())) return "";
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

class RoomView {
  // opts: { room, name, me (the logged-in user or null), wsPath, title }
  constructor(opts) {
    this.room = opts.room;
    this.name = opts.name;
    this.me = opts.me;
    this.wsPath = opts.wsPath;
    this.title = opts.title;
    this.lastReadSent = 0;
    this.readTimer = null;
    this.list = $("messages");
    this.bySeq = new Map(); // seq -> <li>
    this.pending = new Map(); // client_id -> <li>
    this.lastSeq = 0; // highest seq shown
    this.oldestSeq = null;
    this.ws = null;
    this.backoff = 1000;
    this.typers = new Map(); // user key -> { name, timer }
    this.guestId = null; // ours, learnt from the echo of our first message
    this.lastTypingSent = 0;
    this.online = new Map();
  }

  async start() {
    $("room-title").textContent = this.title;
    document.title = this.title + " · Chat";
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) this.clearUnseen();
      this.scheduleRead();
    });
    this.bindSound();
    this.bindOnlinePanel();
    this.renderSidebar();
    $("composer").hidden = false;
    this.bindComposer();
    this.bindAttach();
    $("load-older").addEventListener("click", () => this.loadOlder());
    // Scrolling up near the top reads the page before (the button stays, for keyboards).
    this.list.addEventListener("scroll", () => {
      if (this.list.scrollTop < 80 && !$("load-older").hidden) this.loadOlder();
    });
    $("notice-close").addEventListener("click", () => {
      $("notice").hidden = true;
    });
    // A lost network may leave the socket looking open for a long time: drop it at once, and
    // come back with since when the browser is online again.
    window.addEventListener("offline", () => {
      this.setStatus("offline", "offline");
      if (this.ws) this.ws.close();
    });
    await this.loadHistory();
    this.connect();
  }

  api(query) {
    return "/api/rooms/" + encodeURIComponent(this.room) + "/messages?" + query;
  }

  async loadHistory() {
    try {
      const res = await fetch(this.api("limit=50"));
      if (!res.ok) throw new Error("HTTP " + res.status);
      const page = await res.json();
      page.messages.forEach((m) => this.addMessage(m));
      $("load-older").hidden = !page.has_more;
    } catch (e) {
      this.notify("Could not load the history (" + e.message + ").");
    }
  }

  async loadOlder() {
    if (this.oldestSeq === null || this.loadingOlder) return;
    this.loadingOlder = true;
    try {
      const res = await fetch(this.api("limit=50&before=" + this.oldestSeq));
      if (!res.ok) throw new Error("HTTP " + res.status);
      const page = await res.json();
      // Keep what the reader looks at in place while the page above it grows.
      const below = this.list.scrollHeight - this.list.scrollTop;
      page.messages.forEach((m) => this.addMessage(m));
      this.list.scrollTop = this.list.scrollHeight - below;
      $("load-older").hidden = !page.has_more;
    } catch (e) {
      this.notify("Could not load older messages (" + e.message + ").");
    } finally {
      this.loadingOlder = false;
    }
  }

  connect() {
    // The browser knows it has no network: say so, and wait for it rather than retry blind.
    if (navigator.onLine === false) {
      this.setStatus("offline", "offline");
      if (!this.waitingForNetwork) {
        this.waitingForNetwork = true;
        window.addEventListener("online", () => {
          this.waitingForNetwork = false;
          this.backoff = 1000;
          this.connect();
        }, { once: true });
      }
      return;
    }
    const proto = window.location.protocol === "https:" ? "wss:" : "ws:";
    let url = proto + "//" + window.location.host + this.wsPath + "?since=" + this.lastSeq;
    if (!this.me) url += "&name=" + encodeURIComponent(this.name);
    // Four states: connecting (the first time), online, reconnecting (after a drop, with
    // back-off, resuming with since), offline (the browser has no network).
    if (!this.everOnline && !this.polling) this.setStatus("connecting", "connecting…");
    const ws = new WebSocket(url, ["chat.v1"]);
    this.ws = ws;
    // A socket that closes before its first frame never worked: a proxy or a firewall may be
    // blocking WebSocket. After two of those, the client carries on over long-poll.
    let framed = false;
    ws.addEventListener("open", () => {
      this.backoff = 1000;
      this.lastReadSent = 0;
      this.scheduleRead();
    });
    ws.addEventListener("message", (ev) => {
      if (!framed) {
        framed = true;
        this.wsFailures = 0;
        // The socket works: leave long-poll (it resumed with since, so nothing is missed).
        if (this.polling) this.stopPolling();
        this.everOnline = true;
        this.setStatus("online", "connected");
      }
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch (_) {
        return;
      }
      this.onFrame(frame);
    });
    ws.addEventListener("close", () => {
      if (this.ws !== ws) return;
      if (navigator.onLine === false) {
        this.connect();
        return;
      }
      if (!framed) this.wsFailures = (this.wsFailures || 0) + 1;
      if (this.polling || this.wsFailures >= 2) {
        if (!this.polling) this.startPolling();
        // Try the socket again now and then; long-poll carries the room meanwhile.
        setTimeout(() => this.connect(), POLL_MODE_SOCKET_RETRY_MS);
        return;
      }
      this.setStatus("reconnecting", "reconnecting…");
      const delay = this.backoff;
      this.backoff = Math.min(this.backoff * 2, 10000);
      setTimeout(() => this.connect(), delay);
    });
  }

  setStatus(state, text) {
    const s = $("status");
    s.dataset.state = state;
    s.textContent = text;
  }

  onFrame(f) {
    switch (f.type) {
      case "message":
        if (!this.bySeq.has(f.seq) && !this.isOwn(f.sender)) this.onUnseen();
        this.addMessage(f);
        break;
      case "ack":
        this.onAck(f);
        break;
      case "read":
        this.onRead(f);
        break;
      case "typing":
        this.onTyping(f);
        break;
      case "joined":
        (f.online || []).forEach((u) => this.online.set(userKey(u), u));
        this.renderOnline();
        break;
      case "presence":
        if (f.event === "join") this.online.set(userKey(f.user), f.user);
        else this.online.delete(userKey(f.user));
        this.renderOnline();
        break;
      case "error":
        this.notify(f.message || f.code);
        if (f.code !== "store_unavailable" && f.code !== "rate_limited") break;
        this.failPending();
        break;
      default:
        break;
    }
  }

  messageElement(m) {
    const li = document.createElement("li");
    li.className = "message";
    const meta = document.createElement("div");
    meta.className = "meta";
    const who = document.createElement("span");
    who.className = "sender";
    who.textContent = (m.sender && m.sender.name) || "?";
    meta.appendChild(who);
    if (m.sender && m.sender.role) {
      const role = document.createElement("span");
      role.className = "role";
      role.textContent = m.sender.role;
      meta.appendChild(role);
    }
    const time = document.createElement("time");
    time.className = "time";
    if (m.sent_at) {
      time.dateTime = m.sent_at;
      time.textContent = timeOf(m.sent_at);
    }
    meta.appendChild(time);
    const body = document.createElement("div");
    body.className = "body";
    body.textContent = m.body;
    li.append(meta, body);
    if (m.attachment) li.appendChild(attachmentElement(m.attachment));
    return li;
  }

  isOwn(user) {
    if (!user) return false;
    if (this.me) return user.id === this.me.id;
    if (this.guestId && user.guest) return user.guest === this.guestId;
    return user.id === undefined && user.name === this.name;
  }

  // Read receipts: tell the room how far a logged-in user has read, when the page is seen.
  scheduleRead() {
    if (!this.me || document.visibilityState !== "visible") return;
    if (this.lastSeq <= this.lastReadSent || this.readTimer) return;
    this.readTimer = setTimeout(() => {
      this.readTimer = null;
      if (this.lastSeq > this.lastReadSent && this.send({ type: "read", seq: this.lastSeq })) {
        this.lastReadSent = this.lastSeq;
      }
    }, 300);
  }

  addMessage(m) {
    if (typeof m.seq !== "number" || this.bySeq.has(m.seq)) return;
    let li = m.client_id ? this.pending.get(m.client_id) : null;
    if (li && this.isOwn(m.sender)) {
      this.pending.delete(m.client_id);
      // Our own client id came back: this sender is us, whatever others share our name.
      if (!this.me && m.sender.guest) this.guestId = m.sender.guest;
      li.replaceWith((li = this.messageElement(m)));
    } else {
      li = this.messageElement(m);
    }
    li.dataset.seq = String(m.seq);
    li.dataset.testid = "message";
    li.setAttribute("data-testid", "message");
    if (this.isOwn(m.sender)) {
      li.classList.add("own");
      this.renderTicks(li, m.seq);
    }
    this.bySeq.set(m.seq, li);
    // Keep the list ordered by seq; pending messages stay at the bottom.
    let next = null;
    for (const [seq, el] of this.bySeq) {
      if (seq > m.seq && el !== li && (!next || seq < Number(next.dataset.seq))) next = el;
    }
    const atBottom = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
    if (next) this.list.insertBefore(li, next);
    else {
      const firstPending = this.list.querySelector(".pending");
      this.list.insertBefore(li, firstPending);
    }
    li.dataset.sender = m.sender ? userKey(m.sender) : "";
    li.dataset.sentAt = m.sent_at || "";
    regroup(li);
    if (li.nextElementSibling) regroup(li.nextElementSibling);
    if (m.seq > this.lastSeq) this.lastSeq = m.seq;
    if (this.oldestSeq === null || m.seq < this.oldestSeq) this.oldestSeq = m.seq;
    const typer = m.sender && userKey(m.sender);
    if (typer && this.typers.has(typer)) this.stopTyping(typer);
    if (atBottom || li.classList.contains("own")) this.list.scrollTop = this.list.scrollHeight;
    this.scheduleRead();
  }

  // Read ticks on one's own messages in a pair room: ✓ stored, ✓✓ read by the other member
  // (a `read` frame from them at or past the message). Live only: a page opened later shows
  // ✓ until the other member reads again.
  renderTicks(li, seq) {
    if (!/^dm_/.test(this.room) || typeof seq !== "number") return;
    let ticks = li.querySelector(".ticks");
    if (!ticks) {
      ticks = document.createElement("span");
      ticks.className = "ticks";
      ticks.setAttribute("data-testid", "ticks");
      li.querySelector(".meta").appendChild(ticks);
    }
    const read = seq <= (this.otherReadSeq || 0);
    ticks.textContent = read ? "\u2713\u2713" : "\u2713";
    ticks.title = read ? "read" : "sent";
    li.dataset.read = String(read);
  }

  onRead(f) {
    if (!f.user || this.isOwn(f.user) || typeof f.seq !== "number") return;
    if (f.seq <= (this.otherReadSeq || 0)) return;
    this.otherReadSeq = f.seq;
    for (const [seq, li] of this.bySeq) {
      if (li.classList.contains("own")) this.renderTicks(li, seq);
    }
  }

  onAck(f) {
    const li = this.pending.get(f.client_id);
    if (!li) return;
    li.classList.remove("pending");
    li.classList.add("sent");
    li.dataset.seq = String(f.seq);
  }

  failPending() {
    for (const li of this.pending.values()) {
      if (li.classList.contains("pending")) li.classList.add("failed");
    }
  }

  bindComposer() {
    const input = $("input");
    const form = $("composer");
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        form.requestSubmit();
      }
    });
    input.addEventListener("input", () => {
      const now = Date.now();
      if (input.value.trim() && now - this.lastTypingSent > 2000) {
        this.lastTypingSent = now;
        this.send({ type: "typing", active: true });
      }
    });
    input.addEventListener("blur", () => this.stopOwnTyping());
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const body = input.value.trim();
      if (!body) return;
      const clientId = randomId();
      if (!this.send({ type: "message", body: body, client_id: clientId })) {
        this.notify("Not connected; the message was not sent.");
        return;
      }
      const li = this.messageElement({ sender: { name: this.name, role: this.me && this.me.role }, body: body });
      li.classList.add("pending", "own");
      li.setAttribute("data-testid", "pending-message");
      this.pending.set(clientId, li);
      this.list.appendChild(li);
      this.list.scrollTop = this.list.scrollHeight;
      input.value = "";
      this.lastTypingSent = 0;
    });
  }

  // A new message from someone else: while the tab is hidden, a count in the title and,
  // when switched on, a short sound.
  onUnseen() {
    if (!document.hidden) return;
    this.unseen = (this.unseen || 0) + 1;
    document.title = "(" + this.unseen + ") " + this.title + " · Chat";
    if (this.soundOn) beep();
  }

  clearUnseen() {
    this.unseen = 0;
    document.title = this.title + " · Chat";
  }

  // The sound switch: off by default in public rooms (busy, full of strangers), on in
  // private conversations; the choice is remembered per room.
  bindSound() {
    const button = $("sound-toggle");
    const key = "chat.sound." + this.room;
    const saved = localStorage.getItem(key);
    this.soundOn = saved === null ? /^dm_/.test(this.room) : saved === "on";
    const show = () => {
      button.setAttribute("aria-pressed", String(this.soundOn));
      button.classList.toggle("off", !this.soundOn);
      button.setAttribute("aria-label", this.soundOn ? "Sound on" : "Sound off");
    };
    button.addEventListener("click", () => {
      this.soundOn = !this.soundOn;
      localStorage.setItem(key, this.soundOn ? "on" : "off");
      show();
    });
    show();
  }

  bindAttach() {
    const picker = $("file-input");
    if (!picker) return;
    picker.addEventListener("change", async () => {
      const file = picker.files && picker.files[0];
      picker.value = "";
      if (!file) return;
      const url = "/api/rooms/" + encodeURIComponent(this.room) + "/attachments?name=" + encodeURIComponent(file.name);
      let info;
      try {
        const res = await fetch(url, { method: "POST", body: file, credentials: "same-origin" });
        const answer = await res.json().catch(() => ({}));
        if (!res.ok) {
          this.notify((answer.error && answer.error.message) || "The file could not be sent.");
          return;
        }
        info = answer;
      } catch (e) {
        this.notify("The file could not be sent: " + e.message);
        return;
      }
      const input = $("input");
      const text = input.value.trim();
      const clientId = randomId();
      if (!this.send({ type: "message", body: text, attachment: info.id, client_id: clientId })) {
        this.notify("Not connected; the file was not sent.");
        return;
      }
      const li = this.messageElement({ sender: { name: this.name, role: this.me && this.me.role }, body: text, attachment: info });
      li.classList.add("pending", "own");
      li.setAttribute("data-testid", "pending-message");
      this.pending.set(clientId, li);
      this.list.appendChild(li);
      this.list.scrollTop = this.list.scrollHeight;
      input.value = "";
    });
  }

  stopOwnTyping() {
    if (this.lastTypingSent) {
      this.lastTypingSent = 0;
      this.send({ type: "typing", active: false });
    }
  }

  send(frame) {
    if (this.polling) {
      // Long-poll: messages go over the HTTP API with the same client_id; typing and read
      // receipts wait for the socket.
      if (frame.type !== "message") return false;
      this.postMessage(frame);
      return true;
    }
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  onTyping(f) {
    if (!f.user || !f.user.name || this.isOwn(f.user)) return;
    const who = userKey(f.user);
    if (!f.active) {
      this.stopTyping(who);
      return;
    }
    const was = this.typers.get(who);
    if (was) clearTimeout(was.timer);
    this.typers.set(who, { name: f.user.name, timer: setTimeout(() => this.stopTyping(who), 6000) });
    this.renderTyping();
  }

  stopTyping(who) {
    const was = this.typers.get(who);
    if (was) clearTimeout(was.timer);
    this.typers.delete(who);
    this.renderTyping();
  }

  renderTyping() {
    const names = [...this.typers.values()].map((t) => t.name);
    const el = $("typing");
    if (names.length === 0) el.textContent = "";
    else if (names.length === 1) el.textContent = names[0] + " is typing…";
    else el.textContent = names.join(", ") + " are typing…";
  }

  renderOnline() {
    const list = $("online-list");
    list.replaceChildren();
    for (const u of this.online.values()) {
      const li = document.createElement("li");
      li.textContent = u.name;
      list.appendChild(li);
    }
    $("online-count").textContent = String(this.online.size);
  }

  // The sidebar (wide screens): rooms visited lately, kept in this browser, and for a
  // logged-in user their conversations with unread counts, refreshed while the page is open.
  // On a phone the index page is that list, and the back arrow leads to it.
  renderSidebar() {
    const here = window.location.pathname;
    let recent = [];
    try {
      recent = JSON.parse(localStorage.getItem("chat.recent") || "[]");
    } catch (_) {
      recent = [];
    }
    recent = [{ path: here, title: this.title }, ...recent.filter((r) => r && r.path !== here)].slice(0, 12);
    localStorage.setItem("chat.recent", JSON.stringify(recent));
    const list = $("recent-rooms");
    list.replaceChildren(
      ...recent.map((r) => {
        const li = document.createElement("li");
        const a = document.createElement("a");
        a.href = r.path;
        a.textContent = r.title;
        if (r.path === here) a.setAttribute("aria-current", "page");
        li.appendChild(a);
        return li;
      }),
    );
    if (!this.me) return;
    const refresh = async () => {
      let contacts;
      try {
        const res = await fetch("/api/contacts", { credentials: "same-origin" });
        if (!res.ok) return;
        contacts = await res.json();
      } catch (_) {
        return;
      }
      $("sidebar-contacts").replaceChildren(
        ...contacts.map((c) => {
          const li = document.createElement("li");
          li.setAttribute("data-testid", "sidebar-contact");
          const a = document.createElement("a");
          a.href = "/dm/" + c.id + "/";
          a.textContent = label(c);
          if (a.getAttribute("href") === here) a.setAttribute("aria-current", "page");
          li.appendChild(a);
          if (c.unread > 0 && a.getAttribute("href") !== here) {
            const badge = document.createElement("span");
            badge.className = "badge";
            badge.setAttribute("data-testid", "sidebar-unread");
            badge.textContent = String(c.unread);
            li.appendChild(badge);
          }
          return li;
        }),
      );
      $("sidebar-conversations").hidden = contacts.length === 0;
    };
    refresh();
    setInterval(() => {
      if (!document.hidden) refresh();
    }, SIDEBAR_REFRESH_MS);
  }

  // Who is online: a panel beside the messages on a wide screen, over them on a phone; the
  // header button opens and closes it, Esc closes it. Open by default only where there is room.
  bindOnlinePanel() {
    const panel = $("online");
    const toggle = $("online-toggle");
    const show = (open) => {
      panel.hidden = !open;
      toggle.setAttribute("aria-expanded", String(open));
      document.body.classList.toggle("online-open", open);
    };
    show(window.matchMedia("(min-width: 60rem)").matches);
    toggle.addEventListener("click", () => show(panel.hidden));
    $("online-close").addEventListener("click", () => {
      show(false);
      toggle.focus();
    });
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && !panel.hidden) {
        show(false);
        toggle.focus();
      }
    });
  }

  startPolling() {
    this.polling = true;
    this.everOnline = true;
    const s = $("status");
    s.dataset.transport = "poll";
    this.setStatus("online", "connected (long-poll)");
    this.pollLoop();
  }

  stopPolling() {
    this.polling = false;
    $("status").dataset.transport = "ws";
    if (this.pollAbort) this.pollAbort.abort();
  }

  async pollLoop() {
    let backoff = 1000;
    while (this.polling) {
      const ctrl = new AbortController();
      this.pollAbort = ctrl;
      try {
        const url = "/api/rooms/" + encodeURIComponent(this.room) + "/poll?timeout=25&after=" + this.lastSeq;
        const res = await fetch(url, { signal: ctrl.signal, credentials: "same-origin" });
        if (!res.ok) throw new Error("HTTP " + res.status);
        const page = await res.json();
        page.messages.forEach((m) => this.addMessage(m));
        backoff = 1000;
        if (this.polling) this.setStatus("online", "connected (long-poll)");
      } catch (e) {
        if (!this.polling || ctrl.signal.aborted) return;
        this.setStatus("reconnecting", "reconnecting…");
        await new Promise((ok) => setTimeout(ok, backoff));
        backoff = Math.min(backoff * 2, 10000);
      }
    }
  }

  async postMessage(frame) {
    const body = { body: frame.body, client_id: frame.client_id };
    if (frame.attachment) body.attachment = frame.attachment;
    if (!this.me) body.name = this.name;
    try {
      const res = await fetch("/api/rooms/" + encodeURIComponent(this.room) + "/messages", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
        credentials: "same-origin",
      });
      const answer = await res.json().catch(() => ({}));
      if (!res.ok) {
        this.notify((answer.error && answer.error.message) || "The message was not sent.");
        const li = this.pending.get(frame.client_id);
        if (li) li.classList.add("failed");
        return;
      }
      this.onAck({ client_id: frame.client_id, seq: answer.seq });
      this.addMessage(answer);
    } catch (e) {
      this.notify("The message was not sent: " + e.message);
      const li = this.pending.get(frame.client_id);
      if (li) li.classList.add("failed");
    }
  }

  notify(text) {
    $("notice-text").textContent = text;
    $("notice").hidden = false;
  }
}

async function initPairRoom(otherId) {
  const me = await fetchMe();
  if (!me) {
    window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
    return;
  }
  const room = "dm_" + Math.min(me.id, otherId) + "_" + Math.max(me.id, otherId);
  let title = "Conversation";
  try {
    const res = await fetch("/api/contacts");
    const other = res.ok ? (await res.json()).find((c) => c.id === otherId) : null;
    if (other) title = label(other);
  } catch (_) {
    /* keep the generic title */
  }
  new RoomView({ room: room, name: me.name, me: me, wsPath: "/ws/dm/" + otherId + "/", title: title }).start();
}

async function initRoom() {
  const pair = window.location.pathname.match(/^\/dm\/(\d+)\/?$/);
  if (pair) {
    initPairRoom(Number(pair[1]));
    return;
  }
  const room = roomFromPath();
  const problem = validRoom(room);
  if (problem) {
    $("room-title").textContent = problem;
    return;
  }
  const wsPath = "/ws/chat/" + encodeURIComponent(room) + "/";
  const open = (name, me) =>
    new RoomView({ room: room, name: name, me: me, wsPath: wsPath, title: "#" + room }).start();
  const me = await fetchMe();
  if (me) {
    open(me.name, me);
    return;
  }
  const name = savedName();
  if (name) {
    open(name, null);
    return;
  }
  const form = $("name-form");
  form.hidden = false;
  $("name-input").focus();
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const who = $("name-input").value.trim().slice(0, 64);
    if (!who) return;
    saveName(who);
    form.hidden = true;
    open(who, null);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "index") initIndex();
  else if (page === "room") initRoom();
  else if (page === "login") initLogin();
});
