// A logged-in user's conversations, as the index page and the room page's sidebar show them:
// each contact with an online dot and an unread badge, both kept live by the inbox socket.

import { label } from "./common.js";
import { Inbox } from "./inbox.js";

/** Coalesces a burst of inbox events (a busy conversation) into one read of the list. */
const REFRESH_DELAY_MS = 250;

export class ContactList {
  // list: the <ul>; testids: { item, badge } (the index and the sidebar name theirs apart);
  // onLoaded(contacts): after each read of the list.
  constructor(list, testids, onLoaded) {
    this.list = list;
    this.testids = testids;
    this.onLoaded = onLoaded || (() => {});
    this.contacts = [];
    this.online = new Set();
    this.timer = null;
  }

  /** Reads the list, then keeps it live. */
  async start() {
    await this.refresh();
    new Inbox({
      onOnline: (online) => {
        this.online = online;
        this.render();
      },
      onChange: () => this.refreshSoon(),
    }).start();
  }

  refreshSoon() {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.refresh();
    }, REFRESH_DELAY_MS);
  }

  async refresh() {
    try {
      const res = await fetch("/api/contacts", { credentials: "same-origin" });
      if (!res.ok) return;
      this.contacts = await res.json();
    } catch (_) {
      return; // keep what is shown; the next event reads it again
    }
    this.render();
    this.onLoaded(this.contacts);
  }

  render() {
    const here = window.location.pathname;
    this.list.replaceChildren(
      ...this.contacts.map((c) => {
        const li = document.createElement("li");
        li.setAttribute("data-testid", this.testids.item);
        li.dataset.userId = String(c.id);
        const online = this.online.has(c.id);
        li.dataset.online = String(online);
        const a = document.createElement("a");
        a.href = "/dm/" + c.id + "/";
        const dot = document.createElement("span");
        dot.className = "dot";
        dot.setAttribute("data-testid", "online-dot");
        dot.title = online ? "online" : "offline";
        const name = document.createElement("span");
        name.textContent = label(c);
        const state = document.createElement("span");
        state.className = "visually-hidden";
        state.textContent = online ? " (online)" : "";
        a.append(dot, name, state);
        const current = a.getAttribute("href") === here;
        if (current) a.setAttribute("aria-current", "page");
        li.appendChild(a);
        if (c.unread > 0 && !current) {
          const badge = document.createElement("span");
          badge.className = "badge";
          badge.setAttribute("data-testid", this.testids.badge);
          badge.setAttribute("aria-label", c.unread + " unread");
          badge.textContent = String(c.unread);
          li.appendChild(badge);
        }
        return li;
      }),
    );
  }
}
