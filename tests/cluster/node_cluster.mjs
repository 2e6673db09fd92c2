// A Node socket.io 4.x server with @socket.io/redis-adapter 8.x (classic), in
// one Redis cluster with geventsio servers, driven by tests/test_redis_cluster.py.
//
// Usage: node node_cluster.mjs REDIS_URL KEY
//
// Buffers travel both ways as {"$bin": hex}.
//
// Listens on an ephemeral port and prints {"type": "ready", "port": N, "uid": ...}.
// Then reads one JSON command per line on stdin and prints one JSON line per
// answer ({"type": "result", "id": ..., "result": ...} or {"type": "result",
// "id": ..., "error": ...}) and per observation ({"type": "event", "client":
// name, "event": ..., "args": [...]}).
//
// Server: every socket gets socket.data = {lang: "node"}; "join"(room, ack)
// joins and acks. Server-side handler: "ask"(value, ack) acks
// {from: "node", value}.
//
// Commands:
//   {cmd: "client", id, url, name, room}  a socket.io-client connects to url
//                                         (WebSocket), joins room, records
//                                         every "room-msg"; result: its sid
//   {cmd: "emit", id, room, event, args}  io.to(room).emit(event, ...args)
//   {cmd: "fetch", id, room}              io.in(room).fetchSockets(): [{id, rooms, data}]
//   {cmd: "ask", id, value}               io.serverSideEmitWithAck("ask", value)
//   {cmd: "call", id, room, event, args}  io.to(room).timeout(5000).emitWithAck(event, ...args)
//   {cmd: "emitter", id, room, event, args}  @socket.io/redis-emitter emit
//   {cmd: "close", id}                    closes clients and server, exits

import { createServer } from "node:http";
import { createInterface } from "node:readline";
import { Server } from "socket.io";
import { io as connect } from "socket.io-client";
import { createAdapter } from "@socket.io/redis-adapter";
import { Emitter } from "@socket.io/redis-emitter";
import { createClient } from "redis";

const [redisUrl, key] = process.argv.slice(2);

// Buffers travel as {"$bin": hex} (the tests turn them back into bytes).
function out(obj) {
  const replacer = (k, v) =>
    v && v.type === "Buffer" && Array.isArray(v.data) ? { $bin: Buffer.from(v.data).toString("hex") } : v;
  process.stdout.write(JSON.stringify(obj, replacer) + "\n");
}

const pubClient = createClient({ url: redisUrl });
const subClient = pubClient.duplicate();
const emitterClient = pubClient.duplicate();
for (const c of [pubClient, subClient, emitterClient]) {
  c.on("error", (err) => out({ type: "log", error: String(err) }));
}
await Promise.all([pubClient.connect(), subClient.connect(), emitterClient.connect()]);

const httpServer = createServer();
const io = new Server(httpServer, {
  adapter: createAdapter(pubClient, subClient, { key, requestsTimeout: 5000 }),
});
const emitter = new Emitter(emitterClient, { key });

io.on("connection", (socket) => {
  socket.data = { lang: "node" };
  socket.on("join", (room, ack) => {
    socket.join(room);
    if (typeof ack === "function") ack(true);
  });
});
io.on("ask", (value, ack) => ack({ from: "node", value }));

const clients = [];

async function run(command) {
  switch (command.cmd) {
    case "client": {
      const client = connect(command.url, { transports: ["websocket"], reconnection: false });
      clients.push(client);
      client.on("room-msg", (...args) => out({ type: "event", client: command.name, event: "room-msg", args }));
      client.on("question", (value, ack) => ack({ from: "node", value }));
      await new Promise((resolve, reject) => {
        client.once("connect", resolve);
        client.once("connect_error", reject);
      });
      await client.timeout(5000).emitWithAck("join", command.room);
      return client.id;
    }
    case "emit":
      io.to(command.room).emit(command.event, ...command.args);
      return true;
    case "fetch": {
      const sockets = await io.in(command.room).fetchSockets();
      return sockets.map((s) => ({ id: s.id, rooms: [...s.rooms], data: s.data }));
    }
    case "ask":
      return await io.serverSideEmitWithAck("ask", command.value);
    case "call":
      return await io.to(command.room).timeout(5000).emitWithAck(command.event, ...command.args);
    case "emitter":
      emitter.to(command.room).emit(command.event, ...command.args);
      return true;
    case "close":
      for (const c of clients) c.disconnect();
      io.close();
      await Promise.all([pubClient.quit(), subClient.quit(), emitterClient.quit()]);
      setTimeout(() => process.exit(0), 10);
      return true;
    default:
      throw new Error(`unknown command ${command.cmd}`);
  }
}

const lines = createInterface({ input: process.stdin });
lines.on("line", async (line) => {
  if (!line.trim()) return;
  const command = JSON.parse(line, (k, v) =>
    v && typeof v.$bin === "string" ? Buffer.from(v.$bin, "hex") : v);
  try {
    out({ type: "result", id: command.id, result: await run(command) });
  } catch (err) {
    out({ type: "result", id: command.id, error: String(err && err.message || err) });
  }
});
lines.on("close", () => process.exit(0));

httpServer.listen(0, "127.0.0.1", () => {
  out({ type: "ready", port: httpServer.address().port, uid: io.of("/").adapter.uid });
});
