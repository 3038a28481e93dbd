// The inbox socket (/ws/inbox/, logged-in users only): who of one's contacts is online, and
// when one of one's conversations changes. It carries no counts: the contact list reads them
// again from /api/contacts when told to, so it never drifts from the server's numbers.

const MAX_BACKOFF_MS = 30000;

export class Inbox {
  // onOnline(Set of user ids online), onChange(): a conversation changed (or the socket came
  // back after a gap, or the server lost notifications): read the list again.
  constructor({ onOnline, onChange }) {
    this.onOnline = onOnline;
    this.onChange = onChange;
    this.online = new Set();
    this.backoff = 1000;
  }

  start() {
    const proto = window.location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(proto + "//" + window.location.host + "/ws/inbox/", ["chat.v1"]);
    let opened = false;
    ws.addEventListener("message", (ev) => {
      let f;
      try {
        f = JSON.parse(ev.data);
      } catch (_) {
        return;
      }
      if (f.type === "inbox") {
        // First frame, also after a reconnect: anything may have changed meanwhile.
        if (opened) return;
        opened = true;
        this.backoff = 1000;
        this.online = new Set((f.online || []).map((u) => u.id));
        this.onOnline(this.online);
        this.onChange();
      } else if (f.type === "online" || f.type === "offline") {
        if (!f.user || typeof f.user.id !== "number") return;
        if (f.type === "online") this.online.add(f.user.id);
        else this.online.delete(f.user.id);
        this.onOnline(this.online);
      } else if (f.type === "unread" || f.type === "read" || f.type === "resync") {
        this.onChange(f);
      }
    });
    ws.addEventListener("close", () => {
      // Unknown while away: nobody is shown online rather than a stale someone.
      this.online = new Set();
      this.onOnline(this.online);
      const delay = this.backoff;
      this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
      setTimeout(() => this.start(), delay);
    });
  }
}
