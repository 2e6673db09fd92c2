// The official socket.io-client losing its connection to a geventsio server and coming back.
//
// Usage: node client.mjs <url> <polling|websocket|default>
// The main socket joins room "a" (the server emits news 0 to it), then its engine
// is closed under it (no DISCONNECT packet: the server hears "transport close").
// Its reconnection waits (its auth callback) until the server says "go" on a
// second connection (namespace /control): the server emits what the client
// misses before that. The last line printed is one JSON report.
import { io } from "socket.io-client";

const url = process.argv[2];
const transports = { polling: ["polling"], websocket: ["websocket"] }[process.argv[3]]
  || ["polling", "websocket"];
const TIMEOUT_MS = 10_000;

function report(result) {
  console.log(JSON.stringify(result));
  process.exit(0);
}

setTimeout(() => report({ ok: false, error: "timed out", step }), TIMEOUT_MS).unref();
let step = "start";

let openGate;
let gate = Promise.resolve();
const received = [];
const connects = [];

const socket = io(url, {
  transports,
  reconnectionDelay: 50,
  reconnectionDelayMax: 100,
  auth: (send) => gate.then(() => send({ token: "js" })),
});
socket.on("news", (...args) => received.push(["news", ...args]));
socket.on("direct", (...args) => received.push(["direct", ...args]));

function nextConnect() {
  return new Promise((resolve) => socket.once("connect", () => {
    connects.push({ id: socket.id, recovered: socket.recovered });
    resolve();
  }));
}

try {
  step = "connect";
  await nextConnect();
  step = "join";
  const joined = await socket.timeout(5000).emitWithAck("join", "a", "js");
  if (received.length === 0) {
    await new Promise((resolve) => socket.once("news", resolve));
  }

  const control = io(url + "/control", { transports: ["websocket"], forceNew: true });
  const go = new Promise((resolve) => control.once("go", resolve));
  step = "control";
  await new Promise((resolve) => control.once("connect", resolve));

  step = "cut";
  gate = new Promise((resolve) => { openGate = resolve; });
  const back = nextConnect();
  socket.io.engine.close();
  await go;
  openGate();
  step = "reconnect";
  await back;

  step = "state";
  const state = await socket.timeout(5000).emitWithAck("state");
  control.disconnect();
  socket.disconnect();
  report({ ok: true, joined, connects, received, state });
} catch (err) {
  report({ ok: false, error: String(err), step, connects, received });
}
