// The login and registration page.

import { $ } from "./common.js";

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

export async function initLogin() {
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
