// The reference Socket.IO 4.x server (npm `socket.io`), for geventsio.Client's
// interop tests (tests/test_client_node.py).
//
// Usage: node node_server.mjs [PORT] [OPTIONS_JSON]
//   PORT          0 (default) for an ephemeral port; the tests restart the
//                 server on the port it had
//   OPTIONS_JSON  socket.io Server options, e.g. {"pingInterval": 300}
//
// Prints one JSON line {"port": N} once listening, then one JSON line per
// observation the tests wait for: {"record": value, "nsp": "/", "sid": ...},
// {"dropped": value, ...}, {"never": value, ...}, {"connection": sid, ...},
// {"disconnect": sid, "reason": ...}.
//
// Handlers (on "/" and "/chat"; "/private" needs auth {token: "secret"}):
//   echo(...args, ack)          ack(...args)
//   record(value, ack?)         logs, ack(value)
//   slow-ack(ms, ack)           ack(ms) after ms milliseconds
//   drop-first(value, ack)      the first copy of a value is logged as
//                               "dropped" and not acknowledged; later copies
//                               are recorded and acknowledged
//   never-ack(value, ack)       logs "never", never acknowledges
//   binary(ack)                 emits "binary" (SERVER_NESTED, SERVER_TAIL), acks a Buffer
//   join(room, ack)             joins room, acks the socket's rooms
//   to-room(room, msg, ack?)    emits "room-msg" msg to the room, acks true
//   ask-client(value, ms, ack)  the server calls the client: emits "question"
//                               value with a timeout of ms, acks
//                               {answer} or {error}
//   disconnect-me()             the server disconnects this namespace

import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.argv[2] || 0);
const options = JSON.parse(process.argv[3] || "{}");

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function pattern(n, mul, add) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * mul + add) & 0xff;
  return b;
}

// Keep in step with tests/test_client_node.py.
const SERVER_NESTED = {
  name: "server blob ü",
  parts: [Buffer.from([0]), { inner: [Buffer.alloc(0), pattern(1024, 31, 7)] }, "text", 1.5],
  raw: pattern(256, 1, 0),
};
const SERVER_TAIL = pattern(3000, 13, 5);

const httpServer = createServer();
const io = new Server(httpServer, { cors: { origin: "*" }, ...options });

function lastIsFn(args) {
  return args.length > 0 && typeof args[args.length - 1] === "function";
}

function attach(nsp) {
  nsp.on("connection", (socket) => {
    out({ connection: socket.id, nsp: nsp.name, auth: socket.handshake.auth });
    socket.emit("welcome", { sid: socket.id, nsp: nsp.name, auth: socket.handshake.auth });
    socket.on("disconnect", (reason) => out({ disconnect: socket.id, nsp: nsp.name, reason }));

    socket.on("echo", (...args) => {
      const ack = lastIsFn(args) ? args.pop() : null;
      if (ack) ack(...args);
    });
    socket.on("record", (value, ack) => {
      out({ record: value, nsp: nsp.name, sid: socket.id });
      if (typeof ack === "function") ack(value);
    });
    socket.on("slow-ack", (ms, ack) => setTimeout(() => ack(ms), ms));
    const seen = new Set();
    socket.on("drop-first", (value, ack) => {
      const key = JSON.stringify(value);
      if (!seen.has(key)) {
        seen.add(key);
        out({ dropped: value, nsp: nsp.name, sid: socket.id });
        return;
      }
      out({ record: value, nsp: nsp.name, sid: socket.id });
      ack(value);
    });
    socket.on("never-ack", (value) => out({ never: value, nsp: nsp.name, sid: socket.id }));
    socket.on("binary", (ack) => {
      socket.emit("binary", SERVER_NESTED, SERVER_TAIL);
      ack(Buffer.from([1, 2, 3]));
    });
    socket.on("join", (room, ack) => {
      socket.join(room);
      ack([...socket.rooms].sort());
    });
    socket.on("to-room", (room, msg, ack) => {
      nsp.to(room).emit("room-msg", msg);
      if (typeof ack === "function") ack(true);
    });
    socket.on("ask-client", (value, ms, ack) => {
      socket.timeout(ms).emit("question", value, (err, answer) => {
        ack(err ? { error: err.message } : { answer });
      });
    });
    socket.on("disconnect-me", () => socket.disconnect());
  });
}

attach(io.of("/"));
attach(io.of("/chat"));
const priv = io.of("/private");
priv.use((socket, next) => {
  const auth = socket.handshake.auth || {};
  if (auth.token === "secret") return next();
  const err = new Error("not authorized");
  err.data = { reason: "bad token" };
  next(err);
});
attach(priv);

process.on("SIGTERM", () => process.exit(0));
httpServer.listen(port, "127.0.0.1", () => out({ port: httpServer.address().port }));
