// What every page of the web client shares: names, the logged-in user, formatting.
// Everything user-provided is rendered with textContent, never as HTML.

export const ROOM_RE = /^[A-Za-z0-9_-]{1,64}$/;
export const NAME_KEY = "chat.name";

export function $(id) {
  return document.getElementById(id);
}

export function validRoom(name) {
  if (!ROOM_RE.test(name)) {
    return "Room names use only letters, digits, '-' and '_' (1–64 characters).";
  }
  if (name.startsWith("dm_")) {
    return "Names starting with 'dm_' are reserved for private rooms.";
  }
  return null;
}

export function savedName() {
  try {
    return localStorage.getItem(NAME_KEY) || "";
  } catch (_) {
    return "";
  }
}

export function saveName(name) {
  try {
    localStorage.setItem(NAME_KEY, name);
  } catch (_) {
    /* private mode: keep it for this page only */
  }
}

export function randomId() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return Math.random().toString(36).slice(2) + Date.now().toString(36);
}

export async function fetchMe() {
  try {
    const res = await fetch("/api/me");
    return res.ok ? await res.json() : null;
  } catch (_) {
    return null;
  }
}

export function label(user) {
  return user.role ? user.name + " (" + user.role + ")" : user.name;
}

// Who a user object is: users by id, guests by their guest id (two guests may share a name).
export function userKey(u) {
  if (u.id !== undefined && u.id !== null) return "u:" + u.id;
  if (u.guest) return "g:" + u.guest;
  return "n:" + u.name;
}

export function sizeOf(bytes) {
  if (bytes < 1024) return bytes + " B";
  if (bytes < 1024 * 1024) return Math.round(bytes / 1024) + " KB";
  return (bytes / (1024 * 1024)).toFixed(1) + " MB";
}

export function timeOf(iso) {
  const d = new Date(iso);
  if (isNaN(d.getTime())) return "";
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}
