// The official socket.io-client across a restart of its geventsio server (streams cluster).
//
// Usage: node client.mjs <url>
// Connects, joins room "a" (nickname "js"), prints {"type": "joined", "id": ...}, and
// {"type": "received"} at its first "news". When its server goes away it reconnects on its own
// (to whatever listens on <url> next); after that reconnection it asks for its state
// and prints {"type": "report", ...} with everything it received, then exits.
import { io } from "socket.io-client";

const TIMEOUT_MS = 20_000;
const received = [];
const connects = [];

function print(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

setTimeout(() => { print({ type: "report", ok: false, error: "timed out", connects, received }); process.exit(0); },
  TIMEOUT_MS).unref();

const socket = io(process.argv[2], { transports: ["websocket"], reconnectionDelay: 50, reconnectionDelayMax: 100 });
// Node's behaviour: the offset stays as the handlers' last argument.
socket.on("news", (...args) => received.push(["news", ...args]));
const binary = (a) => (Buffer.isBuffer(a) || a instanceof ArrayBuffer ? { $bin: Buffer.from(a).toString("hex") } : a);
socket.on("direct", (...args) => received.push(["direct", ...args.map(binary)]));

socket.on("connect", async () => {
  connects.push({ id: socket.id, recovered: socket.recovered });
  if (connects.length === 1) {
    const news = new Promise((resolve) => socket.once("news", resolve));
    await socket.timeout(5000).emitWithAck("join", "a", "js");
    print({ type: "joined", id: socket.id });
    await news;
    print({ type: "received" });
    return;
  }
  try {
    const state = await socket.timeout(5000).emitWithAck("state");
    print({ type: "report", ok: true, connects, received, state });
  } catch (err) {
    print({ type: "report", ok: false, error: String(err), connects, received });
  }
  socket.disconnect();
  process.exit(0);
});
