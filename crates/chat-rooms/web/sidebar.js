// The list of one's rooms and conversations: beside the chat on a wide screen (the room
// page's sidebar), and the index page itself on a phone, where the list and the chat are two
// screens. Rooms visited lately are kept in this browser; conversations come from the server.

import { ContactList } from "./contacts.js";

const RECENT_KEY = "chat.recent";
const MAX_RECENT = 12;

function readRecent() {
  try {
    const list = JSON.parse(localStorage.getItem(RECENT_KEY) || "[]");
    return Array.isArray(list) ? list.filter((r) => r && typeof r.path === "string") : [];
  } catch (_) {
    return [];
  }
}

/** Remembers the page at `path` (titled `title`) as the latest room visited. */
export function rememberRoom(path, title) {
  const recent = [{ path: path, title: title }, ...readRecent().filter((r) => r.path !== path)];
  try {
    localStorage.setItem(RECENT_KEY, JSON.stringify(recent.slice(0, MAX_RECENT)));
  } catch (_) {
    /* private mode: the list is for this page only */
  }
}

/** Fills `list` with the rooms visited lately (conversations excepted: they have their list). */
export function renderRecent(list) {
  const here = window.location.pathname;
  const rooms = readRecent().filter((r) => !r.path.startsWith("/dm/"));
  list.replaceChildren(
    ...rooms.map((r) => {
      const li = document.createElement("li");
      li.setAttribute("data-testid", "recent-room");
      const a = document.createElement("a");
      a.href = r.path;
      a.textContent = String(r.title || r.path);
      if (r.path === here) a.setAttribute("aria-current", "page");
      li.appendChild(a);
      return li;
    }),
  );
  return rooms.length;
}

/** The room page's sidebar: recent rooms, and for a user their live conversations. */
export function renderSidebar(me, here, title) {
  rememberRoom(here, title);
  renderRecent(document.getElementById("recent-rooms"));
  if (!me) return;
  const section = document.getElementById("sidebar-conversations");
  const contacts = new ContactList(
    document.getElementById("sidebar-contacts"),
    { item: "sidebar-contact", badge: "sidebar-unread" },
    (list) => {
      section.hidden = list.length === 0;
    },
  );
  contacts.start();
}
