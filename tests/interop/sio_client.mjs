// Drives the official `socket.io-client` 4.x against a Socket.IO v5 server and
// prints ONE JSON line on stdout describing what happened.
//
// Usage: node sio_client.mjs URL SCENARIO [TRANSPORTS]
//   URL         e.g. http://127.0.0.1:8000 (the server's path is /socket.io/)
//   SCENARIO    multiplex | refused | acks | server-acks | binary | rooms |
//               server-disconnect | order | large (each is described at its function)
//   TRANSPORTS  polling   - transports: ["polling"] (never upgrades)
//               websocket - transports: ["websocket"] (WebSocket from the start)
//               default   - the client's defaults: polling, then the upgrade;
//                           every scenario waits for the upgrade before it ends
//
// The line is an object with "ok": true and the scenario's observations, or
// "ok": false and "error" (exit status 1) when something went wrong or the
// scenario did not finish within SIO_CLIENT_TIMEOUT_MS (default 10000) ms.
// SIO_CLIENT_EXTRA_HEADERS (a JSON object) is passed as the Manager's extraHeaders.
//
// Values received from the server are reported with binary data as
// {"$bin": hex} for a Node Buffer (anything else binary is reported under
// another "$" key, so that it compares unequal), undefined as
// {"$undefined": true} and errors as {"$error": message, "data": data}.
// The payloads below are shared with tests/test_interop_socketio.py.

import { Manager } from "socket.io-client";

const [url, scenario, transports = "default"] = process.argv.slice(2);
const TIMEOUT_MS = Number(process.env.SIO_CLIENT_TIMEOUT_MS || 10000);
const started = Date.now();
const managers = [];
const events = []; // ordered log of notable events, with milliseconds since start
let finished = false;

// -- payloads (keep in step with the Python side) ----------------------------

function pattern(n, mul, add) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * mul + add) & 0xff;
  return b;
}

const CLIENT_NESTED = {
  label: "client blob ✓",
  small: Buffer.from([0, 1, 2, 253, 254, 255]),
  empty: Buffer.alloc(0),
  list: [Buffer.from("abc"), 7, null, { deep: pattern(300, 7, 3) }, [Buffer.from([42])]],
  flag: true,
};
const CLIENT_TAIL = pattern(5000, 13, 1);

// -- helpers -----------------------------------------------------------------

function note(event, extra = {}) {
  events.push({ t: Date.now() - started, event, ...extra });
}

function enc(v) {
  if (v === undefined) return { $undefined: true };
  if (typeof v === "function") return { $function: true };
  if (v === null || typeof v !== "object") return v;
  if (Buffer.isBuffer(v)) return { $bin: v.toString("hex") };
  if (v instanceof ArrayBuffer) return { $arraybuffer: Buffer.from(v).toString("hex") };
  if (ArrayBuffer.isView(v)) {
    const bytes = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    return { $view: v.constructor.name, hex: bytes.toString("hex") };
  }
  if (v instanceof Error) return { $error: v.message, data: enc(v.data) };
  if (Array.isArray(v)) return v.map(enc);
  const out = {};
  for (const [k, x] of Object.entries(v)) out[k] = enc(x);
  return out;
}

function newManager(label = "m" + managers.length) {
  const opts = { reconnection: false, timeout: TIMEOUT_MS };
  if (process.env.SIO_CLIENT_EXTRA_HEADERS) opts.extraHeaders = JSON.parse(process.env.SIO_CLIENT_EXTRA_HEADERS);
  if (transports === "polling") opts.transports = ["polling"];
  else if (transports === "websocket") opts.transports = ["websocket"];
  const m = new Manager(url, opts); // autoConnect: opens its engine now
  m.label = label;
  m.upgrades = [];
  m.upgradeErrors = [];
  managers.push(m);
  m.engine.on("upgrade", (t) => {
    m.upgrades.push(t.name);
    note("upgrade", { manager: label, to: t.name });
  });
  m.engine.on("upgradeError", (err) => {
    m.upgradeErrors.push(String(err && err.message ? err.message : err));
    note("upgradeError", { manager: label, error: String(err) });
  });
  m.on("error", (err) => note("manager error", { manager: label, error: String(err) }));
  m.on("close", (reason) => note("manager close", { manager: label, reason }));
  return m;
}

function trackSocket(socket, label) {
  socket.on("connect", () => note("connect", { socket: label, id: socket.id }));
  socket.on("connect_error", (err) => note("connect_error", { socket: label, message: err.message }));
  socket.on("disconnect", (reason) => note("disconnect", { socket: label, reason }));
  return socket;
}

/** Resolves when the socket connects; rejects with the connect_error. */
function connected(socket) {
  return new Promise((resolve, reject) => {
    if (socket.connected) return resolve();
    socket.once("connect", resolve);
    socket.once("connect_error", reject);
  });
}

/** Resolves with {connected, id} or {connected: false, error} (never rejects). */
function outcome(socket) {
  return connected(socket).then(
    () => ({ connected: true, id: socket.id }),
    (err) => ({ connected: false, error: enc(err) }),
  );
}

/** Emit with an acknowledgement callback; resolves with all the ack's arguments. */
function ack(socket, event, ...args) {
  return new Promise((resolve) => socket.emit(event, ...args, (...reply) => resolve(reply)));
}

function once(emitter, event) {
  return new Promise((resolve) => emitter.once(event, (...args) => resolve(args)));
}

function transportOf(m) {
  return m.engine && m.engine.transport ? m.engine.transport.name : null;
}

/** In default mode, wait until the manager's engine has upgraded to WebSocket. */
async function settle(m) {
  if (transports !== "default" || transportOf(m) === "websocket") return;
  await new Promise((resolve, reject) => {
    m.engine.once("upgrade", resolve);
    m.engine.once("upgradeError", (err) => reject(new Error(`upgrade failed: ${err}`)));
  });
}

function engineInfo(m) {
  return { transport: transportOf(m), upgrades: m.upgrades, upgrade_errors: m.upgradeErrors };
}

async function until(predicate, what) {
  while (!predicate()) {
    if (finished) throw new Error(`gave up waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

// -- scenarios ---------------------------------------------------------------

// Sockets for "/" and "/chat" on one Manager (one Engine.IO connection), each
// with its own auth payload; each asks the server who it is; then "/chat"
// disconnects, then "/".
async function multiplex() {
  const m = newManager();
  const root = trackSocket(m.socket("/", { auth: { token: "root-token", n: 1 } }), "/");
  const chatAuth = { token: "chat-token", list: [1, "two", null] };
  const chat = trackSocket(m.socket("/chat", { auth: chatAuth }), "/chat");
  await Promise.all([connected(root), connected(chat)]);
  const r = {
    root_id: root.id,
    chat_id: chat.id,
    root_engine_id: root.io.engine.id,
    chat_engine_id: chat.io.engine.id,
    same_manager: root.io === chat.io,
    managers: managers.length,
  };
  r.root_whoami = enc(await ack(root, "whoami", "from root"));
  r.chat_whoami = enc(await ack(chat, "whoami", "from chat"));
  await settle(m);
  r.engine_id_at_end = m.engine.id;
  Object.assign(r, engineInfo(m));
  chat.disconnect();
  root.disconnect();
  return r;
}

// Four namespaces on one connection: "/" with a bad token (the handler raises
// ConnectionRefusedError), "/false" (the handler returns False), "/nope" (no
// such namespace) and "/ok", which connects and must still work afterwards.
async function refused() {
  const m = newManager();
  const sockets = {
    "/": m.socket("/", { auth: { token: "bad" } }),
    "/false": m.socket("/false", { auth: { token: "whatever" } }),
    "/nope": m.socket("/nope"),
    "/ok": m.socket("/ok", { auth: { token: "good" } }),
  };
  for (const [nsp, s] of Object.entries(sockets)) trackSocket(s, nsp);
  const outcomes = {};
  await Promise.all(Object.entries(sockets).map(async ([nsp, s]) => {
    outcomes[nsp] = await outcome(s);
  }));
  const r = { outcomes, engine_id: m.engine.id };
  r.ok_ping = enc(await ack(sockets["/ok"], "ping", "still there?"));
  await settle(m);
  Object.assign(r, engineInfo(m));
  r.active = Object.fromEntries(Object.entries(sockets).map(([nsp, s]) => [nsp, s.active]));
  sockets["/ok"].disconnect();
  return r;
}

// Acknowledgements of the client's emits: values returned by the server's
// handlers, several arguments, none, the promise API, and timeouts (the
// "slow" handler takes longer than the client waits).
async function acks() {
  const m = newManager();
  const s = trackSocket(m.socket("/"), "/");
  await connected(s);
  const r = { sid: s.id };
  r.add = enc(await ack(s, "add", 2, 3));
  r.multi = enc(await ack(s, "multi", "x"));
  r.noret = enc(await ack(s, "noret"));
  r.with_ack = enc(await s.emitWithAck("add", 10, 20));
  r.timeout_ok = await new Promise((resolve) => {
    s.timeout(500).emit("add", 1, 1, (err, value) => resolve(enc([err, value])));
  });
  const slowCalls = [];
  const t0 = Date.now();
  await new Promise((resolve) => {
    s.timeout(500).emit("slow", 750, (...args) => {
      slowCalls.push({ ms: Date.now() - t0, args: enc(args) });
      resolve();
    });
  });
  // The server runs this after "slow" returns, so its (late) ack of "slow"
  // reaches us first: by the time this resolves, it has been ignored.
  r.after_slow = enc(await ack(s, "add", 4, 4));
  r.after_slow_ms = Date.now() - t0;
  r.slow_calls = slowCalls;
  await settle(m);
  Object.assign(r, engineInfo(m));
  s.disconnect();
  return r;
}

// The server calls us (sio.call, a broadcast call, an emit with a callback)
// once we emit "ready"; "ignored" is never acknowledged; "finish" ends it.
async function serverAcks() {
  const m = newManager();
  const s = trackSocket(m.socket("/"), "/");
  const received = [];
  s.on("question", (a, b, cb) => {
    received.push(enc(["question", a, b]));
    cb({ sum: a + b, got: [a, b] }, "second");
  });
  s.on("noargs", (cb) => {
    received.push(enc(["noargs"]));
    cb();
  });
  s.on("ignored", (...args) => {
    received.push(enc(["ignored", ...args]));
  });
  const finish = once(s, "finish");
  await connected(s);
  s.emit("ready");
  const [summary] = await finish;
  const r = { sid: s.id, received, finish: enc(summary) };
  await settle(m);
  Object.assign(r, engineInfo(m));
  s.disconnect();
  return r;
}

// Nested binary both ways: in an event with an ack (whose reply holds binary),
// in an event from the server, and in the client's ack of a server call.
async function binary() {
  const m = newManager();
  const s = trackSocket(m.socket("/"), "/");
  let binBack = null;
  let binQ = null;
  s.on("bin_back", (...args) => {
    binBack = enc(args);
  });
  s.on("bin_q", (data, cb) => {
    binQ = enc([data]);
    cb(data, Buffer.from("ok"));
  });
  await connected(s);
  const r = { sid: s.id };
  r.bin_ack = enc(await ack(s, "bin", CLIENT_NESTED, CLIENT_TAIL, "plain"));
  r.bin_back = binBack;
  r.bin_q = binQ;
  await settle(m);
  Object.assign(r, engineInfo(m));
  s.disconnect();
  return r;
}

// Three clients (three connections): A and B join room "red", C joins none;
// A shouts, the server broadcasts to "red" without A, then to all of "red",
// collects a vote from "red", and tells everyone "finish".
async function rooms() {
  const names = ["A", "B", "C"];
  const ms = names.map((n) => newManager(n));
  const socks = ms.map((m, i) => trackSocket(m.socket("/"), names[i]));
  const received = { A: [], B: [], C: [] };
  socks.forEach((s, i) => {
    const name = names[i];
    s.onAny((event, ...args) => {
      received[name].push(enc([event, ...args.filter((a) => typeof a !== "function")]));
    });
    s.on("vote", (q, cb) => cb({ voter: name, q }));
  });
  await Promise.all(socks.map(connected));
  await Promise.all(ms.map(settle));
  const r = { ids: Object.fromEntries(socks.map((s, i) => [names[i], s.id])) };
  r.joins = {
    A: enc(await ack(socks[0], "join", "red")),
    B: enc(await ack(socks[1], "join", "red")),
    C: enc(await ack(socks[2], "join", null)),
  };
  const finishes = socks.map((s) => once(s, "finish"));
  r.shout_ack = enc(await ack(socks[0], "shout", "hello red"));
  await Promise.all(finishes);
  r.received = received;
  r.engines = Object.fromEntries(ms.map((m) => [m.label, engineInfo(m)]));
  socks.forEach((s) => s.disconnect());
  return r;
}

// The server disconnects "/chat" (asked to by "kick"): "/" keeps working on
// the same connection; then the server disconnects "/" too.
async function serverDisconnect() {
  const m = newManager();
  const root = trackSocket(m.socket("/"), "/");
  const chat = trackSocket(m.socket("/chat"), "/chat");
  await Promise.all([connected(root), connected(chat)]);
  await settle(m);
  const r = { root_id: root.id, chat_id: chat.id, engine_id: m.engine.id };
  Object.assign(r, engineInfo(m));
  const chatGone = once(chat, "disconnect");
  chat.emit("kick");
  r.chat_reason = (await chatGone)[0];
  r.chat_connected = chat.connected;
  r.chat_active = chat.active;
  r.root_ping = enc(await ack(root, "ping", "after kick"));
  r.engine_id_after_chat = m.engine.id;
  const rootGone = once(root, "disconnect");
  root.emit("kick");
  r.root_reason = (await rootGone)[0];
  r.root_connected = root.connected;
  r.root_active = root.active;
  r.engine_state = m.engine.readyState; // the Manager closes its engine with its last socket
  return r;
}

// 50 numbered plain emits with volatile emits among them, then a volatile emit
// once the transport is writable. socket.io-client drops a volatile emit when
// the transport is not writable: "sent" records which ones it kept.
async function order() {
  const m = newManager();
  const s = trackSocket(m.socket("/"), "/");
  await connected(s);
  const sent = [];
  const writable = () => Boolean(m.engine.transport && m.engine.transport.writable);
  for (let i = 0; i < 50; i++) {
    s.emit("seq", i);
    sent.push({ event: "seq", n: i, kept: true });
    if (i % 10 === 9) {
      const kept = writable();
      s.volatile.emit("vol", i);
      sent.push({ event: "vol", n: i, kept });
    }
  }
  const r = { sid: s.id };
  r.count = enc(await ack(s, "count"));
  await settle(m);
  await until(writable, "a writable transport");
  const kept = writable();
  s.volatile.emit("vol", 100);
  sent.push({ event: "vol", n: 100, kept });
  r.log = enc(await ack(s, "log"));
  r.sent = sent;
  Object.assign(r, engineInfo(m));
  s.disconnect();
  return r;
}

// Asks the server for a large event and a small one (long-polling bodies above
// and below the server's compression threshold) and reports both as received.
async function large() {
  const m = newManager();
  const s = trackSocket(m.socket("/"), "/");
  await connected(s);
  const big = once(s, "big");
  const small = once(s, "small");
  s.emit("send", "big", "small");
  const r = { sid: s.id, big: enc(await big), small: enc(await small) };
  Object.assign(r, engineInfo(m));
  s.disconnect();
  return r;
}

const SCENARIOS = {
  multiplex,
  refused,
  acks,
  "server-acks": serverAcks,
  binary,
  rooms,
  "server-disconnect": serverDisconnect,
  order,
  large,
};

// -- main --------------------------------------------------------------------

function finish(ok, fields) {
  if (finished) return;
  finished = true;
  clearTimeout(deadline);
  const line = { ok, scenario, transports, ...fields, elapsed_ms: Date.now() - started, events };
  process.stdout.write(JSON.stringify(line) + "\n");
  process.exitCode = ok ? 0 : 1;
  if (!ok) {
    for (const m of managers) {
      try {
        m.engine && m.engine.close();
      } catch {
        // the JSON line is what matters
      }
    }
  }
  // Let the last packets (a polling DISCONNECT, the close) go out, but never linger.
  setTimeout(() => process.exit(ok ? 0 : 1), 1000).unref();
}

if (!url || !(scenario in SCENARIOS) || !["polling", "websocket", "default"].includes(transports)) {
  process.stdout.write(JSON.stringify({
    ok: false,
    error: `usage: node sio_client.mjs URL ${Object.keys(SCENARIOS).join("|")} ` +
      "[polling|websocket|default]",
  }) + "\n");
  process.exit(2);
}

const deadline = setTimeout(() => {
  finish(false, { error: `timeout after ${TIMEOUT_MS} ms in scenario ${scenario}` });
}, TIMEOUT_MS);

SCENARIOS[scenario]().then(
  (report) => finish(true, report),
  (err) => finish(false, { error: err && err.stack ? err.stack : String(err) }),
);
