// A Node socket.io server in a geventsio streams cluster: @socket.io/redis-streams-adapter on
// the same Redis stream, with connection state recovery on.
//
// Usage: node server.mjs <redis url> <stream name> <session key prefix>
// Prints {"type": "ready", "port": N}, then reads one JSON command per line on stdin:
//   {"id": 1, "cmd": "emit", "room": "a" | null, "args": [...]}  -> io.to(room).emit("news", ...args)
//   {"id": 2, "cmd": "close"}
// and answers each with {"type": "result", "id": ...}. Its clients' events:
//   "join" (room, nickname, ack): joins, keeps the nickname in socket.data, acks "joined"
//   "state" (ack): acks {rooms, session: socket.data, recovered}
import { createServer } from "node:http";
import { createInterface } from "node:readline";
import { createClient } from "redis";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-streams-adapter";

const [redisUrl, streamName, sessionKeyPrefix] = process.argv.slice(2);
const redisClient = createClient({ url: redisUrl });
await redisClient.connect();

const httpServer = createServer();
const io = new Server(httpServer, {
  adapter: createAdapter(redisClient, { streamName, sessionKeyPrefix }),
  connectionStateRecovery: { maxDisconnectionDuration: 60_000 },
  pingInterval: 500,
  pingTimeout: 2000,
});

io.on("connection", (socket) => {
  socket.on("join", (room, nickname, ack) => {
    socket.join(room);
    socket.data = { nickname };
    ack("joined");
  });
  socket.on("state", (ack) => {
    ack({ rooms: [...socket.rooms].sort(), session: socket.data, recovered: socket.recovered });
  });
});

function print(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

httpServer.listen(0, "127.0.0.1", () => print({ type: "ready", port: httpServer.address().port }));

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const command = JSON.parse(line);
  if (command.cmd === "emit") {
    const target = command.room ? io.to(command.room) : io;
    target.emit("news", ...command.args);
    print({ type: "result", id: command.id });
  } else if (command.cmd === "close") {
    print({ type: "result", id: command.id });
    io.close();
    await redisClient.quit();
    process.exit(0);
  }
}
