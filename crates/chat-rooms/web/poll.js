// The long-poll fallback: when WebSocket cannot connect (a proxy blocks it), the room page
// reads new messages with GET /api/rooms/{room}/poll and sends over the HTTP API with the same
// client_id, so nothing is lost or doubled when the socket comes back. Mixed into RoomView.

import { $ } from "./common.js";

export const pollMethods = {
  startPolling() {
    this.polling = true;
    this.everOnline = true;
    const s = $("status");
    s.dataset.transport = "poll";
    this.setStatus("online", "connected (long-poll)");
    this.pollLoop();
  },

  stopPolling() {
    this.polling = false;
    $("status").dataset.transport = "ws";
    if (this.pollAbort) this.pollAbort.abort();
  },

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
  },

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
  },
};
