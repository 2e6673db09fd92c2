// Speaks the Socket.IO Admin UI's protocol to a geventsio server, for tests/test_admin.py.
//
// Usage: node admin_client.mjs URL SCENARIO   (credentials in ADMIN_USER / ADMIN_PASSWORD)
//
// The admin connects to URL/admin with socket.io-client as the Admin UI's web
// app does; a second, ordinary client connects to "/" and is the one the
// admin watches and acts on. The last stdout line is one JSON report:
// {"ok": true, ...observations} or {"ok": false, "error": "..."}.
//
// SCENARIO "development": wrong credentials are refused; the right ones get
// session, config, all_sockets and server_stats; the client's connection,
// events, rooms, transport upgrade and disconnection are reported; the
// actions join, emit, leave and _disconnect act on the client; the session
// token from the first login logs in again without the password.
// SCENARIO "readonly": the actions are refused and change nothing.
// SCENARIO "production": only server_stats, no per-socket or per-event data.

import { io } from "socket.io-client";

const [url, scenario] = process.argv.slice(2);
const user = process.env.ADMIN_USER || "admin";
const password = process.env.ADMIN_PASSWORD || "";
const STEP_MS = 8000;
const report = { ok: false, scenario };
const timers = [];

const watchdog = setTimeout(() => finish(new Error("watchdog: the scenario ran for more than 40 s")), 40_000);

function finish(error) {
  clearTimeout(watchdog);
  if (error) report.error = String(error.stack || error);
  else report.ok = true;
  console.log(JSON.stringify(report));
  process.exit(error ? 1 : 0);
}

// Every event the admin socket receives, in order, with its arguments.
function record(socket) {
  const seen = [];
  const waiters = [];
  socket.onAny((event, ...args) => {
    seen.push({ event, args });
    for (const w of waiters.slice()) w.check();
  });
  const waitFor = (what, predicate, ms = STEP_MS) => new Promise((resolve, reject) => {
    const w = {
      check: () => {
        const hit = seen.find((e) => predicate(e));
        if (hit) {
          clearTimeout(w.timer);
          waiters.splice(waiters.indexOf(w), 1);
          resolve(hit);
        }
      },
    };
    w.timer = setTimeout(() => {
      waiters.splice(waiters.indexOf(w), 1);
      reject(new Error(`no ${what} within ${ms} ms; admin saw: ${JSON.stringify(seen.map((e) => e.event))}`));
    }, ms);
    timers.push(w.timer);
    waiters.push(w);
    w.check();
  });
  return { seen, waitFor };
}

function connect(path, options) {
  const socket = io(url + path, { forceNew: true, reconnection: false, ...options });
  return socket;
}

function connected(socket) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${socket.nsp}: not connected in time`)), STEP_MS);
    socket.once("connect", () => { clearTimeout(timer); resolve(); });
    socket.once("connect_error", (err) => { clearTimeout(timer); reject(err); });
  });
}

function refused(socket) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no connect_error in time")), STEP_MS);
    socket.once("connect", () => { clearTimeout(timer); reject(new Error("connected with bad credentials")); });
    socket.once("connect_error", (err) => { clearTimeout(timer); resolve(err.message); });
  });
}

const once = (socket, event) => new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(`no ${event} on the client in time`)), STEP_MS);
  socket.once(event, (...args) => { clearTimeout(timer); resolve(args); });
});

const ackOf = (socket, ...args) => socket.timeout(STEP_MS).emitWithAck(...args);

async function development() {
  const bad = connect("/admin", { auth: { username: user, password: password + "x" } });
  report.wrongPassword = await refused(bad);
  bad.close();

  const admin = connect("/admin", { auth: { username: user, password } });
  const adm = record(admin);
  await connected(admin);
  report.session = (await adm.waitFor("session", (e) => e.event === "session")).args;
  report.config = (await adm.waitFor("config", (e) => e.event === "config")).args[0];
  report.allSocketsAtLogin = (await adm.waitFor("all_sockets", (e) => e.event === "all_sockets")).args[0];
  report.firstStats = (await adm.waitFor("server_stats", (e) => e.event === "server_stats")).args[0];
  report.adminId = admin.id;

  // A client on polling first: its upgrade to WebSocket is reported too.
  const client = connect("/", { query: { who: "watched" } });
  await connected(client);
  report.clientId = client.id;
  const id = client.id;
  report.socketConnected = (await adm.waitFor("socket_connected",
    (e) => e.event === "socket_connected" && e.args[0].id === id)).args;

  client.on("hi", () => {});
  report.helloAck = await ackOf(client, "hello", { n: 1 });
  report.eventReceived = (await adm.waitFor("event_received",
    (e) => e.event === "event_received" && e.args[1] === id)).args;
  report.eventSent = (await adm.waitFor("event_sent",
    (e) => e.event === "event_sent" && e.args[1] === id)).args;

  report.joinAck = await ackOf(admin, "join", "/", "room1", id);
  report.roomsAfterJoin = await ackOf(client, "rooms");
  report.roomJoined = (await adm.waitFor("room_joined",
    (e) => e.event === "room_joined" && e.args[1] === "room1")).args;

  const announced = once(client, "announce");
  report.emitAck = await ackOf(admin, "emit", "/", "room1", "announce", "to room1", 2);
  report.announce = await announced;

  report.leaveAck = await ackOf(admin, "leave", "/", "room1", id);
  report.roomsAfterLeave = await ackOf(client, "rooms");
  report.roomLeft = (await adm.waitFor("room_left",
    (e) => e.event === "room_left" && e.args[1] === "room1")).args;

  report.upgrade = (await adm.waitFor("socket_updated",
    (e) => e.event === "socket_updated" && e.args[0].id === id && e.args[0].transport === "websocket")).args;
  report.statsWithClient = (await adm.waitFor("server_stats with the client",
    (e) => e.event === "server_stats" && e.args[0].aggregatedEvents.length > 0
      && e.args[0].namespaces.some((n) => n.name === "/" && n.socketsCount === 1))).args[0];
  report.unknownNamespaceAck = await ackOf(admin, "join", "/nowhere", "r", id);
  report.badRoomAck = await ackOf(admin, "join", "/", 42, id);

  const gone = once(client, "disconnect");
  report.disconnectAck = await ackOf(admin, "_disconnect", "/", false, id);
  report.clientDisconnect = await gone;
  report.socketDisconnected = (await adm.waitFor("socket_disconnected",
    (e) => e.event === "socket_disconnected" && e.args[1] === id)).args;
  admin.close();

  // The session token from the first login stands in for the password.
  const again = connect("/admin", { auth: { sessionId: report.session[0] } });
  const again2 = record(again);
  await connected(again);
  report.reloginConfig = (await again2.waitFor("config", (e) => e.event === "config")).args[0];
  again.close();
  const forged = connect("/admin", { auth: { sessionId: "0123456789abcdef" } });
  report.forgedSession = await refused(forged);
  forged.close();
}

async function readonly() {
  const admin = connect("/admin", { auth: { username: user, password } });
  const adm = record(admin);
  await connected(admin);
  report.config = (await adm.waitFor("config", (e) => e.event === "config")).args[0];
  const client = connect("/", { transports: ["websocket"] });
  await connected(client);
  const id = client.id;
  await adm.waitFor("socket_connected", (e) => e.event === "socket_connected" && e.args[0].id === id);
  report.joinAck = await ackOf(admin, "join", "/", "room1", id);
  report.disconnectAck = await ackOf(admin, "_disconnect", "/", true, id);
  report.emitAck = await ackOf(admin, "emit", "/", "", "announce", "nope");
  report.roomsAfter = await ackOf(client, "rooms");
  report.stillConnected = client.connected;
  client.close();
  admin.close();
}

async function production() {
  const admin = connect("/admin", { auth: { username: user, password } });
  const adm = record(admin);
  await connected(admin);
  report.config = (await adm.waitFor("config", (e) => e.event === "config")).args[0];
  const client = connect("/", { transports: ["websocket"] });
  await connected(client);
  report.helloAck = await ackOf(client, "hello", { n: 1 });
  report.joinAck = await ackOf(admin, "join", "/", "room1", client.id);
  report.roomsAfterJoin = await ackOf(client, "rooms");
  const seenSoFar = adm.seen.length;
  // Anything emitted about the client's event would arrive before this report.
  report.stats = (await adm.waitFor("a later server_stats",
    (e) => e.event === "server_stats" && adm.seen.indexOf(e) >= seenSoFar
      && e.args[0].aggregatedEvents.length > 0)).args[0];
  report.events = adm.seen.map((e) => e.event);
  client.close();
  admin.close();
}

const scenarios = { development, readonly, production };
if (!scenarios[scenario]) finish(new Error(`unknown scenario ${scenario}`));
scenarios[scenario]().then(() => finish(), (err) => finish(err));
