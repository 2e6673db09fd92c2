// Drives the official `socket.io-client` 4.x, configured with the npm parser
// `socket.io-msgpack-parser` 3.x, against a geventsio server, and prints ONE
// JSON line on stdout describing what happened.
//
// Usage: node sio_msgpack_client.mjs URL SCENARIO TRANSPORTS [PARSER]
//   SCENARIO    main     - events, acks both ways, binary, undefined and Date,
//                          a second namespace, a room broadcast, a refusal
//               mismatch - connect with PARSER ("msgpack" or "json", the
//                          client's default) and report how the attempt ends
//   TRANSPORTS  polling | websocket | default (polling, then the upgrade)
//
// The line is an object with "ok": true and the observations, or "ok": false
// and "error" (exit status 1). Values received are reported with a Node
// Buffer as {"$bin": hex}, an ArrayBuffer as {"$arraybuffer": hex}, a Date
// as {"$date": ms}, undefined as {"$undefined": true} and errors as
// {"$error": message, "data": data}. The payloads are shared with
// tests/test_interop_msgpack.py.

import { createRequire } from "node:module";
import { Manager } from "socket.io-client";

const require = createRequire(import.meta.url);
const msgpackParser = require("socket.io-msgpack-parser");

const [url, scenario, transports = "default", parserName = "msgpack"] = process.argv.slice(2);
const TIMEOUT_MS = Number(process.env.SIO_CLIENT_TIMEOUT_MS || 10000);
const managers = [];
const events = [];

function enc(v) {
  if (v === undefined) return { $undefined: true };
  if (typeof v === "function") return { $function: true };
  if (v === null || typeof v !== "object") return v;
  if (Buffer.isBuffer(v)) return { $bin: v.toString("hex") };
  if (v instanceof ArrayBuffer) return { $arraybuffer: Buffer.from(v).toString("hex") };
  if (v instanceof Date) return { $date: v.getTime() };
  if (v instanceof Error) return { $error: v.message, data: enc(v.data) };
  if (Array.isArray(v)) return v.map(enc);
  const out = {};
  for (const [k, x] of Object.entries(v)) out[k] = enc(x);
  return out;
}

function newManager(parser = msgpackParser) {
  const opts = { reconnection: false, timeout: TIMEOUT_MS };
  if (parser) opts.parser = parser;
  if (transports !== "default") opts.transports = [transports];
  const m = new Manager(url, opts);
  m.upgrades = [];
  m.engine.on("upgrade", (t) => m.upgrades.push(t.name));
  m.on("error", (err) => events.push(["manager error", String(err && err.message)]));
  m.on("close", (reason) => events.push(["manager close", reason]));
  managers.push(m);
  return m;
}

function connected(socket) {
  return new Promise((resolve, reject) => {
    if (socket.connected) return resolve();
    socket.once("connect", resolve);
    socket.once("connect_error", reject);
  });
}

function ack(socket, event, ...args) {
  return new Promise((resolve) => socket.emit(event, ...args, (...reply) => resolve(reply)));
}

function once(emitter, event) {
  return new Promise((resolve) => emitter.once(event, (...args) => resolve(args)));
}

/** In default mode, wait until the manager's engine has upgraded to WebSocket. */
async function settle(m) {
  if (transports !== "default" || m.engine.transport.name === "websocket") return;
  await once(m.engine, "upgrade");
}

// -- scenarios ---------------------------------------------------------------

async function main() {
  const r = {};
  const m = newManager();
  const root = m.socket("/", { auth: { token: "t0k", key: Buffer.from([1, 2, 3]) } });
  const welcome = once(root, "welcome");
  root.on("question", (a, b, cb) => cb({ sum: a + b }, Buffer.from([a, b])));
  await connected(root);
  r.id = root.id;
  r.welcome = enc(await welcome);

  // Acks of the server's handlers, binary both ways.
  r.echo = enc(await ack(root, "echo", "hello ✓", 42, -7, 1.5, null, true,
    { nested: [Buffer.from("abc"), { deep: Buffer.alloc(0) }] }, Buffer.from([0, 255])));
  // What only JavaScript sends: ArrayBuffer, a typed array, undefined, Date.
  r.kinds = enc(await ack(root, "kinds", new Uint8Array([1, 2, 3]).buffer,
    new Uint8Array(8).fill(9), undefined, new Date(1700000000123)));
  // The server calls this client (sio.call) and returns what it answered.
  r.server_call = enc(await ack(root, "ask-me"));

  // A second namespace on the same connection, a second connection, a room.
  const m2 = newManager();
  const chatA = m.socket("/chat");
  const chatB = m2.socket("/chat");
  const news = { A: [], B: [] };
  chatA.on("news", (...args) => news.A.push(enc(args)));
  chatB.on("news", (...args) => news.B.push(enc(args)));
  await Promise.all([connected(chatA), connected(chatB)]);
  r.same_engine = chatA.io.engine.id === root.io.engine.id;
  r.chat_a_id = chatA.id;
  r.join = enc(await ack(chatA, "join", "room1"));
  // The server emits "news" to room1, then "done" to the namespace: each
  // connection receives in order, so at "done" every "news" has arrived.
  const done = Promise.all([once(chatA, "done"), once(chatB, "done")]);
  chatA.emit("shout", "to the room", Buffer.from("bin"));
  await done;
  r.news = news;

  // A refusal with error data.
  const priv = m.socket("/private", { auth: { pass: "wrong" } });
  r.refused = await connected(priv).then(() => ({ connected: true }),
    (err) => ({ connected: false, error: enc(err) }));

  await settle(m);
  await settle(m2);
  r.transports = managers.map((x) => x.engine.transport.name);
  r.upgrades = managers.map((x) => x.upgrades);
  chatB.disconnect();
  chatA.disconnect();
  root.disconnect();
  return r;
}

async function mismatch() {
  const m = newManager(parserName === "msgpack" ? msgpackParser : null);
  const socket = m.socket("/");
  const result = await Promise.race([
    connected(socket).then(() => ({ connected: true }), (err) => ({ connect_error: enc(err) })),
    once(m, "close").then(([reason]) => ({ closed: reason })),
  ]);
  // Whatever came first, the manager's connection ends (the server closes it).
  if (m.engine.readyState !== "closed") await once(m, "close");
  return { result, events, connected: socket.connected };
}

const scenarios = { main, mismatch };

const timer = setTimeout(() => {
  console.log(JSON.stringify({ ok: false, error: `timed out after ${TIMEOUT_MS} ms`, events }));
  process.exit(1);
}, TIMEOUT_MS);

try {
  if (!scenarios[scenario]) throw new Error(`unknown scenario ${scenario}`);
  const report = await scenarios[scenario]();
  console.log(JSON.stringify({ ok: true, ...report }));
} catch (err) {
  console.log(JSON.stringify({ ok: false, error: String((err && err.stack) || err), events }));
  process.exitCode = 1;
} finally {
  clearTimeout(timer);
  for (const m of managers) m.engine.close();
}
