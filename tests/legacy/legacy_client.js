// Drives socket.io-client 2.x (Engine.IO v3, Socket.IO protocol v4) -- and, for
// the mixed room, socket.io-client 4.x -- against a geventsio server started
// with allow_eio3=True, and prints ONE JSON line on stdout describing what
// happened.
//
// Usage: node legacy_client.js URL SCENARIO [TRANSPORTS]
//   URL         e.g. http://127.0.0.1:8000 (the server's path is /socket.io/)
//   SCENARIO    roundtrip | namespaces | rooms | rejected | refused (each is described at
//               its function)
//   TRANSPORTS  polling | websocket | default (polling, then the upgrade: the
//               scenario waits for the upgrade before it ends)
//
// The line is {"ok": true, ...observations} or {"ok": false, "error": ...}
// (exit status 1), also when the scenario does not finish within
// SIO_CLIENT_TIMEOUT_MS (default 10000) ms. Binary values are reported as
// {"$bin": hex} (a Buffer or an ArrayBuffer), undefined as {"$undefined": true}.
// The payloads are shared with tests/test_interop_legacy.py.

"use strict";

const ioV2 = require("socket.io-client");
const { io: ioV4 } = require("socket.io-client-v4");

const [url, scenario, transports = "default"] = process.argv.slice(2);
const TIMEOUT_MS = Number(process.env.SIO_CLIENT_TIMEOUT_MS || 10000);
const sockets = [];
let finished = false;

// -- payloads (keep in step with the Python side) ------------------------------

const TEXT = "héllo wörld 😀 ✓";
const CLIENT_BLOB = { label: "client ✓", small: Buffer.from([0, 1, 2, 253, 254, 255]),
  list: [Buffer.from("abc"), 7, null, { deep: Buffer.alloc(3000, 0x5a) }] };

// -- helpers ---------------------------------------------------------------------

function enc(v) {
  if (v === undefined) return { $undefined: true };
  if (v === null || typeof v !== "object") return v;
  if (Buffer.isBuffer(v)) return { $bin: v.toString("hex") };
  if (v instanceof ArrayBuffer) return { $bin: Buffer.from(v).toString("hex") };
  if (v instanceof Error) return { $error: v.message };
  if (Array.isArray(v)) return v.map(enc);
  const out = {};
  for (const [k, x] of Object.entries(v)) out[k] = enc(x);
  return out;
}

function transportOptions() {
  // LEGACY_FORCE_BASE64=1: binary as base64 text over WebSocket too (the client's forceBase64).
  const base64 = process.env.LEGACY_FORCE_BASE64 === "1" ? { forceBase64: true } : {};
  if (transports === "polling") return { transports: ["polling"], ...base64 };
  if (transports === "websocket") return { transports: ["websocket"], ...base64 };
  return base64;
}

/** A socket.io-client 2.x socket on its own Manager; records the engine's upgrades. */
function v2(nsp = "/", extra = {}) {
  const socket = ioV2(url + nsp, { forceNew: true, reconnection: false, timeout: TIMEOUT_MS,
    ...transportOptions(), ...extra });
  socket.upgrades = [];
  socket.io.engine.on("upgrade", (t) => socket.upgrades.push(t.name));
  sockets.push(socket);
  return socket;
}

function v4(nsp = "/") {
  const socket = ioV4(url + nsp, { forceNew: true, reconnection: false, timeout: TIMEOUT_MS,
    ...transportOptions() });
  sockets.push(socket);
  return socket;
}

function connected(socket) {
  return new Promise((resolve, reject) => {
    if (socket.connected) return resolve();
    socket.once("connect", resolve);
    socket.once("connect_error", reject);
    socket.once("error", reject);
  });
}

function ack(socket, event, ...args) {
  return new Promise((resolve) => socket.emit(event, ...args, (...reply) => resolve(reply)));
}

function once(emitter, event) {
  return new Promise((resolve) => emitter.once(event, (...args) => resolve(args)));
}

function transportOf(socket) {
  return socket.io.engine.transport.name;
}

/** In default mode, wait until the socket's engine has upgraded to WebSocket. */
async function settle(socket) {
  if (transports !== "default" || transportOf(socket) === "websocket") return;
  await new Promise((resolve, reject) => {
    socket.io.engine.once("upgrade", resolve);
    socket.io.engine.once("upgradeError", (err) => reject(new Error(`upgrade failed: ${err}`)));
  });
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// -- scenarios -------------------------------------------------------------------

const scenarios = {
  // "/" joined implicitly; an event emitted by the connect handler; acks both
  // ways with text and binary; the heartbeat over several ping intervals; a
  // server-side disconnect.
  async roundtrip() {
    const socket = v2();
    const welcome = once(socket, "welcome");
    const asked = new Promise((resolve) => socket.on("ask", (...args) => {
      const cb = args.pop();
      cb("answer", Buffer.from([9, 8, 7]), args);
      resolve(args);
    }));
    const binaryEvent = once(socket, "blob");
    await connected(socket);
    const engineId = socket.io.engine.id;
    const welcomed = await welcome;
    const echo = await ack(socket, "echo", TEXT, CLIENT_BLOB);
    await settle(socket);
    const served = await ack(socket, "start");
    const askArgs = await asked;
    const blob = await binaryEvent;
    // Several of the client's ping intervals (the server closes a v3 session
    // that stops pinging): the connection must still answer afterwards.
    await sleep(Number(process.env.LEGACY_IDLE_MS || 1000));
    const later = await ack(socket, "echo", "still here");
    const disconnected = once(socket, "disconnect");
    socket.emit("kick-me");
    const [reason] = await disconnected;
    return { engine_id: engineId, transport: transportOf(socket), upgrades: socket.upgrades,
      welcome: enc(welcomed), echo: enc(echo), served: enc(served), asked: enc(askArgs),
      blob: enc(blob), later: enc(later), disconnect_reason: reason };
  },

  // A namespace with a query (the v4 protocol's way to pass auth), a refused
  // namespace, a refused connection with data, and leaving one namespace while
  // "/" stays connected.
  async namespaces() {
    const root = v2("/", { query: { engine: "q" } });
    await connected(root);
    const chat = root.io.socket("/chat", { query: { token: "abc", n: "1" } });
    await connected(chat);
    const chatEcho = await ack(chat, "where", "from chat");
    const rootEcho = await ack(root, "where", "from root");
    const unknown = root.io.socket("/nowhere");
    const [unknownError] = await once(unknown, "error");
    const locked = root.io.socket("/locked");
    const [lockedError] = await once(locked, "error");
    chat.close();
    const afterLeave = await ack(root, "where", "after leave");
    await settle(root);
    return { transport: transportOf(root), chat_echo: enc(chatEcho), root_echo: enc(rootEcho),
      unknown_error: enc(unknownError), locked_error: enc(lockedError), after_leave: enc(afterLeave),
      chat_connected: chat.connected, root_connected: root.connected };
  },

  // A 2.x and a 4.x client in one room: broadcasts from one reach the other,
  // text and binary, and the server's room broadcast reaches both.
  async rooms() {
    const old = v2();
    const cur = v4();
    await Promise.all([connected(old), connected(cur)]);
    await settle(old);
    const joined = [await ack(old, "join", "v2"), await ack(cur, "join", "v4")];
    const toCur = once(cur, "shouted");
    old.emit("shout", { text: TEXT, bin: Buffer.from([1, 2, 3]) });
    const curGot = await toCur;
    const toOld = once(old, "shouted");
    cur.emit("shout", { text: "from v4", bin: Buffer.from([4, 5]) });
    const oldGot = await toOld;
    const newsOld = once(old, "news");
    const newsCur = once(cur, "news");
    cur.emit("announce");
    const news = [await newsOld, await newsCur];
    return { transport: transportOf(old), joined: enc(joined), v4_got: enc(curGot),
      v2_got: enc(oldGot), news: enc(news) };
  },

  // The server's "/" connect handler refuses: the ERROR packet's plain message.
  async rejected() {
    const socket = v2();
    const [error] = await once(socket, "error");
    return { connected: socket.connected, error: enc(error) };
  },

  // A server without allow_eio3: the 2.x client cannot connect.
  async refused() {
    const socket = v2();
    const error = await new Promise((resolve) => {
      socket.once("connect", () => resolve(null));
      socket.once("connect_error", (err) => resolve(err));
      socket.once("error", (err) => resolve(err));
      socket.io.engine.once("close", (reason) => resolve(new Error(`engine close: ${reason}`)));
    });
    return { connected: socket.connected, error: error === null ? null : String(error.message || error),
      description: error && error.description !== undefined ? String(error.description) : null };
  },
};

// -- main ------------------------------------------------------------------------

function finish(report, code) {
  if (finished) return;
  finished = true;
  for (const s of sockets) {
    try { s.close(); } catch (e) { /* already closed */ }
  }
  process.stdout.write(JSON.stringify(report) + "\n", () => process.exit(code));
}

setTimeout(() => finish({ ok: false, error: `timed out after ${TIMEOUT_MS} ms` }, 1), TIMEOUT_MS).unref();

(async () => {
  const run = scenarios[scenario];
  if (!run) throw new Error(`unknown scenario ${scenario}`);
  const report = await run();
  finish({ ok: true, ...report }, 0);
})().catch((err) => finish({ ok: false, error: String(err && err.stack ? err.stack : err) }, 1));
