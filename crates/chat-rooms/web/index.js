// The index page: choose a room by name, or (logged in) a conversation.

import { $, fetchMe, label, saveName, savedName, validRoom } from "./common.js";
import { ContactList } from "./contacts.js";
import { renderRecent } from "./sidebar.js";

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
  $("account").hidden = false;
  const contacts = new ContactList($("contacts"), { item: "contact", badge: "unread" }, (list) => {
    $("no-contacts").hidden = list.length > 0;
  });
  contacts.start();
}

// A name to suggest: "guest-" and 6 random hex digits (16.7 million, so two guests rarely
// share one). Names only help people tell guests apart; the server knows a guest by the
// guest id of its cookie, which the page never sees.
function randomGuestName() {
  const bytes = new Uint8Array(3);
  crypto.getRandomValues(bytes);
  return "guest-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function initIndex() {
  showAccount();
  // On a phone this page is the list screen: the rooms visited lately are one tap away.
  $("recent").hidden = renderRecent($("recent-rooms")) === 0;
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
