// Drives the official `engine.io-client` against an Engine.IO v4 server and
// prints ONE JSON line on stdout describing what happened.
//
// Usage: node eio_client.mjs URL PATH MODE [SCENARIO]
//   URL       e.g. http://127.0.0.1:8000
//   PATH      e.g. /engine.io/
//   MODE      polling   - transports: ["polling"] (never upgrades)
//             websocket - transports: ["websocket"] (WebSocket from the start)
//             upgrade   - the default polling-then-upgrade; waits for the upgrade
//   SCENARIO  echo (default) - after open (and the upgrade, in upgrade mode),
//                 send a text and two binary messages, wait for their echoes and
//                 for at least one server ping, then close from the client side.
//             server-first - wait for the two messages the server sends on
//                 connect (text, then binary) and, in upgrade mode, for the
//                 upgrade; then send "bye" and wait for the server to close.
//
// The output line is an object with "ok": true, or "ok": false and "error"
// (exit status 1) when something went wrong or nothing happened within
// EIO_CLIENT_TIMEOUT_MS (default 10000) milliseconds.
// Binary messages are reported with their length, SHA-256 and, when short,
// their bytes; text messages with their exact contents.

import { createHash } from "node:crypto";
import { Socket } from "engine.io-client";

const [url, path = "/engine.io/", mode = "upgrade", scenario = "echo"] = process.argv.slice(2);
const TIMEOUT_MS = Number(process.env.EIO_CLIENT_TIMEOUT_MS || 10000);

// Payloads, shared with the Python side (which recomputes the large pattern).
const TEXT = "hello from node: héllo wörld ✓ 🚀";
const SMALL = Uint8Array.from([1, 2, 3, 4]);
const LARGE_SIZE = 100 * 1024;
const LARGE = new Uint8Array(LARGE_SIZE);
for (let i = 0; i < LARGE_SIZE; i++) LARGE[i] = (i * 31 + 7) & 0xff;

const started = Date.now();
const result = {
  ok: false,
  mode,
  scenario,
  sid: null,
  transport_at_open: null,
  transport_after_upgrade: null,
  transport_at_close: null,
  upgrades_offered: null,
  upgrade_errors: [],
  sent: [],
  received: [],
  pings: 0,
  errors: [],
  close: null,
  events: [], // ordered log of notable events, with milliseconds since start
};

let finished = false;

function log(event, extra = {}) {
  result.events.push({ t: Date.now() - started, event, ...extra });
}

function describe(data) {
  if (typeof data === "string") {
    return { type: "text", data };
  }
  let bytes;
  let cls;
  if (Buffer.isBuffer(data)) {
    cls = "Buffer";
    bytes = data;
  } else if (data instanceof ArrayBuffer) {
    cls = "ArrayBuffer";
    bytes = Buffer.from(data);
  } else if (ArrayBuffer.isView(data)) {
    cls = data.constructor.name;
    bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  } else {
    return { type: "unknown", js_type: typeof data, repr: String(data).slice(0, 200) };
  }
  const out = {
    type: "binary",
    class: cls,
    length: bytes.length,
    sha256: createHash("sha256").update(bytes).digest("hex"),
  };
  if (bytes.length <= 64) out.bytes = Array.from(bytes);
  return out;
}

function finish(ok, error) {
  if (finished) return;
  finished = true;
  clearTimeout(deadline);
  result.ok = ok;
  if (error !== undefined) result.error = String(error);
  result.elapsed_ms = Date.now() - started;
  if (socket && socket.transport && result.transport_at_close === null) {
    result.transport_at_close = socket.transport.name;
  }
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exitCode = ok ? 0 : 1;
  if (!ok && socket && socket.readyState !== "closed") {
    try {
      socket.close();
    } catch {
      // the JSON line is what matters
    }
  }
  // Let a polling close packet go out, but never linger.
  setTimeout(() => process.exit(ok ? 0 : 1), 1000).unref();
}

if (!url || !["polling", "websocket", "upgrade"].includes(mode) ||
    !["echo", "server-first"].includes(scenario)) {
  result.error = "usage: node eio_client.mjs URL PATH polling|websocket|upgrade [echo|server-first]";
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(2);
}

const deadline = setTimeout(() => {
  finish(false, `timeout after ${TIMEOUT_MS} ms (readyState=${socket && socket.readyState})`);
}, TIMEOUT_MS);

const options = { path };
if (mode === "polling") options.transports = ["polling"];
else if (mode === "websocket") options.transports = ["websocket"];
else {
  options.transports = ["polling", "websocket"];
  options.upgrade = true;
}

let socket;
try {
  socket = new Socket(url, options);
} catch (err) {
  finish(false, `constructor failed: ${err && err.stack ? err.stack : err}`);
}

let opened = false;
let upgraded = mode !== "upgrade"; // only upgrade mode waits for one
let sentOurs = false;
let closing = false;

function send(data) {
  result.sent.push(describe(data));
  socket.send(data);
}

function step() {
  if (finished || closing || !opened || !upgraded) return;
  if (scenario === "echo") {
    if (!sentOurs) {
      sentOurs = true;
      send(TEXT);
      send(SMALL);
      send(LARGE);
      log("sent", { count: 3, transport: socket.transport.name });
    }
    if (result.received.length >= 3 && result.pings >= 1) {
      closing = true;
      result.transport_at_close = socket.transport.name;
      log("client close");
      socket.close();
    }
  } else {
    // server-first: the server's two messages, then "bye"; the server closes.
    if (!sentOurs && result.received.length >= 2) {
      sentOurs = true;
      send("bye");
      log("sent bye", { transport: socket.transport.name });
    }
  }
}

if (socket) {
  socket.on("handshake", (data) => {
    result.upgrades_offered = data.upgrades;
    log("handshake", { pingInterval: data.pingInterval, pingTimeout: data.pingTimeout });
  });
  socket.on("open", () => {
    opened = true;
    result.sid = socket.id;
    result.transport_at_open = socket.transport.name;
    log("open", { transport: socket.transport.name });
    step();
  });
  socket.on("upgrading", (transport) => log("upgrading", { to: transport.name }));
  socket.on("upgrade", (transport) => {
    result.transport_after_upgrade = transport.name;
    log("upgrade", { to: transport.name });
    upgraded = true;
    step();
  });
  socket.on("upgradeError", (err) => {
    result.upgrade_errors.push(String(err && err.message ? err.message : err));
    log("upgradeError", { error: String(err) });
    if (mode === "upgrade") finish(false, `upgrade failed: ${err}`);
  });
  socket.on("message", (data) => {
    const d = describe(data);
    d.transport = socket.transport.name;
    result.received.push(d);
    step();
  });
  socket.on("ping", () => {
    result.pings += 1;
    log("ping", { transport: socket.transport.name });
    step();
  });
  socket.on("error", (err) => {
    result.errors.push(String(err && err.message ? err.message : err));
    log("error", { error: String(err) });
  });
  socket.on("close", (reason, description) => {
    let desc = description;
    if (description instanceof Error) desc = description.message;
    else if (description && typeof description === "object") {
      desc = description.description || description.message || String(description);
    }
    result.close = { reason, description: desc === undefined ? null : String(desc) };
    if (result.transport_at_close === null && socket.transport) {
      result.transport_at_close = socket.transport.name;
    }
    log("close", { reason });
    if (scenario === "echo") {
      const expected = closing && reason === "forced close";
      finish(expected, expected ? undefined : `unexpected close: ${reason} (${desc})`);
    } else {
      const expected = sentOurs && reason === "transport close";
      finish(expected, expected ? undefined : `unexpected close: ${reason} (${desc})`);
    }
  });
}
