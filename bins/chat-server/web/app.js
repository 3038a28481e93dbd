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

// ---------------------------------------------------------------- index page

function initIndex() {
  const form = $("room-form");
  const room = $("room-name");
  const name = $("display-name");
  const error = $("room-error");
  name.value = savedName() || "guest-" + Math.floor(1000 + Math.random() * 9000);
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

function timeOf(iso) {
  const d = new Date(iso);
  if (isNaN(d.getTime())) return "";
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

class RoomView {
  constructor(room, name) {
    this.room = room;
    this.name = name;
    this.list = $("messages");
    this.bySeq = new Map(); // seq -> <li>
    this.pending = new Map(); // client_id -> <li>
    this.lastSeq = 0; // highest seq shown
    this.oldestSeq = null;
    this.ws = null;
    this.backoff = 1000;
    this.typers = new Map(); // name -> timeout
    this.lastTypingSent = 0;
    this.online = new Map();
  }

  async start() {
    $("room-title").textContent = "#" + this.room;
    document.title = "#" + this.room + " · Chat";
    $("composer").hidden = false;
    this.bindComposer();
    $("load-older").addEventListener("click", () => this.loadOlder());
    $("notice-close").addEventListener("click", () => {
      $("notice").hidden = true;
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
    if (this.oldestSeq === null) return;
    try {
      const res = await fetch(this.api("limit=50&before=" + this.oldestSeq));
      if (!res.ok) throw new Error("HTTP " + res.status);
      const page = await res.json();
      page.messages.forEach((m) => this.addMessage(m));
      $("load-older").hidden = !page.has_more;
    } catch (e) {
      this.notify("Could not load older messages (" + e.message + ").");
    }
  }

  connect() {
    const proto = window.location.protocol === "https:" ? "wss:" : "ws:";
    const url =
      proto + "//" + window.location.host + "/ws/chat/" + encodeURIComponent(this.room) +
      "/?name=" + encodeURIComponent(this.name) + "&since=" + this.lastSeq;
    this.setStatus("connecting", "connecting…");
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.addEventListener("open", () => {
      this.backoff = 1000;
      this.setStatus("online", "connected");
    });
    ws.addEventListener("message", (ev) => {
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
      this.setStatus("offline", "reconnecting…");
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
        this.addMessage(f);
        break;
      case "ack":
        this.onAck(f);
        break;
      case "typing":
        this.onTyping(f);
        break;
      case "joined":
        (f.online || []).forEach((u) => this.online.set(u.name, u));
        this.renderOnline();
        break;
      case "presence":
        if (f.event === "join") this.online.set(f.user.name, f.user);
        else this.online.delete(f.user.name);
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
    return li;
  }

  addMessage(m) {
    if (typeof m.seq !== "number" || this.bySeq.has(m.seq)) return;
    let li = m.client_id ? this.pending.get(m.client_id) : null;
    if (li && m.sender && m.sender.name === this.name) {
      this.pending.delete(m.client_id);
      li.replaceWith((li = this.messageElement(m)));
    } else {
      li = this.messageElement(m);
    }
    li.dataset.seq = String(m.seq);
    li.dataset.testid = "message";
    li.setAttribute("data-testid", "message");
    if (m.sender && m.sender.name === this.name) li.classList.add("own");
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
    if (m.seq > this.lastSeq) this.lastSeq = m.seq;
    if (this.oldestSeq === null || m.seq < this.oldestSeq) this.oldestSeq = m.seq;
    const typer = m.sender && m.sender.name;
    if (typer && this.typers.has(typer)) this.stopTyping(typer);
    if (atBottom || li.classList.contains("own")) this.list.scrollTop = this.list.scrollHeight;
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
      const li = this.messageElement({ sender: { name: this.name }, body: body });
      li.classList.add("pending", "own");
      li.setAttribute("data-testid", "pending-message");
      this.pending.set(clientId, li);
      this.list.appendChild(li);
      this.list.scrollTop = this.list.scrollHeight;
      input.value = "";
      this.lastTypingSent = 0;
    });
  }

  stopOwnTyping() {
    if (this.lastTypingSent) {
      this.lastTypingSent = 0;
      this.send({ type: "typing", active: false });
    }
  }

  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  onTyping(f) {
    const who = f.user && f.user.name;
    if (!who || who === this.name) return;
    if (!f.active) {
      this.stopTyping(who);
      return;
    }
    clearTimeout(this.typers.get(who));
    this.typers.set(who, setTimeout(() => this.stopTyping(who), 6000));
    this.renderTyping();
  }

  stopTyping(who) {
    clearTimeout(this.typers.get(who));
    this.typers.delete(who);
    this.renderTyping();
  }

  renderTyping() {
    const names = [...this.typers.keys()];
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
    $("online").hidden = this.online.size === 0;
  }

  notify(text) {
    $("notice-text").textContent = text;
    $("notice").hidden = false;
  }
}

function initRoom() {
  const room = roomFromPath();
  const problem = validRoom(room);
  if (problem) {
    $("room-title").textContent = problem;
    return;
  }
  const name = savedName();
  if (name) {
    new RoomView(room, name).start();
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
    new RoomView(room, who).start();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "index") initIndex();
  else if (page === "room") initRoom();
});
