// Many official socket.io-client 4.x clients against several server processes behind
// one port (tests/test_gunicorn_workers.py), printing ONE JSON line on stdout.
//
// Usage: node cluster_clients.mjs URL COUNT
//   Even-numbered clients stay on long-polling, odd ones upgrade to WebSocket. Each
//   joins room "all" and gets 5 echoes acknowledged; then client 0 asks for one
//   broadcast to "all", every client must receive it, and each asks the server
//   that owns its session "where" (worker pid, tag, routing statistics, transport).
//
// The line is {"ok": true, "clients": [{sid, transports, where}, ...]} or
// {"ok": false, "error": ...} (exit status 1), also after SIO_CLIENT_TIMEOUT_MS
// (default 15000) ms.

import { io } from "socket.io-client";
import { connected, joinAndEcho, reporter, upgraded } from "./many_clients.mjs";

const [url, countArg = "12"] = process.argv.slice(2);
const count = Number(countArg);
const TIMEOUT_MS = Number(process.env.SIO_CLIENT_TIMEOUT_MS || 15000);
const ACK_MS = 5000;
const sockets = [];
const finish = reporter(sockets, TIMEOUT_MS);

async function main() {
  const ready = [];
  for (let i = 0; i < count; i++) {
    const transports = i % 2 === 0 ? ["polling"] : ["polling", "websocket"];
    const s = io(url, { transports, forceNew: true, reconnection: false });
    sockets.push(s);
    ready.push(connected(s));
    if (transports.length > 1) ready.push(upgraded(s));
  }
  await Promise.all(ready);
  await joinAndEcho(sockets, ACK_MS);
  const token = `hello ${Date.now()}`;
  const received = sockets.map((s) => new Promise((resolve) => {
    s.on("msg", (data) => { if (data === token) resolve(); });
  }));
  await sockets[0].timeout(ACK_MS).emitWithAck("bcast", "all", token);
  await Promise.all(received);
  const clients = [];
  for (const [i, s] of sockets.entries()) {
    clients.push({
      sid: s.io.engine.id,
      transports: i % 2 === 0 ? "polling" : "default",
      where: await s.timeout(ACK_MS).emitWithAck("where"),
    });
  }
  finish({ ok: true, clients });
}

main().catch((err) => finish({ ok: false, error: String((err && err.stack) || err) }));
