// How a message looks: its element, its file, and its grouping with the one before it.

import { sizeOf, timeOf } from "./common.js";

/**
 * Groups a message with the one before it: the same sender within the same minute shows no
 * name and time again (`continued`), and the first message of a day carries its date
 * (`data-day`, drawn as a separator by the style sheet).
 */
export function regroup(li) {
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

/** A message's list item: sender, role, time, text, and its file if it has one. */
export function messageElement(m) {
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
