// The room page: one room (public or a pair room), live over its WebSocket, with history,
// typing, presence, read ticks, files, and the long-poll fallback.

import { $, fetchMe, label, randomId, saveName, savedName, userKey, validRoom } from "./common.js";
import { messageElement, regroup } from "./messages.js";
import { pollMethods } from "./poll.js";
import { renderSidebar } from "./sidebar.js";
import { beep } from "./sound.js";

function roomFromPath() {
  const m = window.location.pathname.match(/^\/chat\/([^/]+)\/?$/);
  return m ? decodeURIComponent(m[1]) : "";
}

/** How often a client on long-poll tries its WebSocket again. */
const POLL_MODE_SOCKET_RETRY_MS = 5000;

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
    renderSidebar(this.me, window.location.pathname, this.title);
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
        // How far the other member of a pair room has read: ticks are right from the start.
        (f.reads || []).forEach((r) => {
          if (this.me && r.user !== this.me.id) this.onRead({ user: { id: r.user }, seq: r.seq });
        });
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
      li.replaceWith((li = messageElement(m)));
    } else {
      li = messageElement(m);
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
  // (the `reads` of `joined`, then each `read` frame from them, at or past the message).
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
      const li = messageElement({ sender: { name: this.name, role: this.me && this.me.role }, body: body });
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
      const li = messageElement({ sender: { name: this.name, role: this.me && this.me.role }, body: text, attachment: info });
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

export async function initRoom() {
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

Object.assign(RoomView.prototype, pollMethods);
