// The chat web client: plain ES modules, no build step. Each page names itself in
// <body data-page>, and its module does the rest.

import { initIndex } from "./index.js";
import { initLogin } from "./login.js";
import { initRoom } from "./room.js";

const page = document.body.dataset.page;
if (page === "index") initIndex();
else if (page === "room") initRoom();
else if (page === "login") initLogin();
