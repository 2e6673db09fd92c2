// Official socket.io-client 4.x clients through a reverse proxy (tests/test_nginx.py), each
// from a source address of its own, so that the proxy's ip_hash sees different clients.
//
// Usage: node proxy_clients.mjs URL SPEC TOKEN
//   SPEC is a JSON list of {"localAddress": "127.0.0.2", "upgrade": true|false}: an
//   upgrading client starts on polling and moves to WebSocket, the others stay on polling.
//   Every client connects, joins room "all" and gets 5 echoes acknowledged; then the
//   script prints {"type": "ready"} and waits for one stdin line, the token the Python
//   side broadcasts to "all". Client 0 then broadcasts TOKEN to "all"; every client must
//   receive both tokens, and each asks its server "where" it is.
//
// The last line is {"ok": true, "clients": [{localAddress, upgrade, transport, where,
// received}, ...]} or {"ok": false, "error": ...} (exit status 1), also after
// SIO_CLIENT_TIMEOUT_MS (default 15000) ms.

import http from "node:http";
import readline from "node:readline";
import { io } from "socket.io-client";
import { connected, joinAndEcho, reporter, upgraded } from "./many_clients.mjs";

const [url, specArg, token] = process.argv.slice(2);
const spec = JSON.parse(specArg);
const TIMEOUT_MS = Number(process.env.SIO_CLIENT_TIMEOUT_MS || 15000);
const ACK_MS = 5000;
const sockets = [];
const finish = reporter(sockets, TIMEOUT_MS);

function stdinLine() {
  const lines = readline.createInterface({ input: process.stdin });
  return new Promise((resolve) => lines.once("line", (line) => { lines.close(); resolve(line.trim()); }));
}

async function main() {
  const ready = [];
  const received = [];
  for (const { localAddress, upgrade } of spec) {
    // The polling requests and the WebSocket both go out through this agent, so from this address.
    const agent = new http.Agent({ localAddress, keepAlive: true });
    const transports = upgrade ? ["polling", "websocket"] : ["polling"];
    const s = io(url, { transports, agent, forceNew: true, reconnection: false });
    const got = [];
    s.on("msg", (data) => got.push(data));
    sockets.push(s);
    received.push(got);
    ready.push(connected(s));
    if (upgrade) ready.push(upgraded(s));
  }
  await Promise.all(ready);
  await joinAndEcho(sockets, ACK_MS);
  process.stdout.write(JSON.stringify({ type: "ready" }) + "\n");
  const pythonToken = await stdinLine();
  if ((await sockets[0].timeout(ACK_MS).emitWithAck("bcast", "all", token)) !== true) {
    throw new Error("bcast refused");
  }
  const expected = [token, pythonToken];
  await Promise.all(sockets.map((s, i) => new Promise((resolve) => {
    const check = () => { if (expected.every((t) => received[i].includes(t))) resolve(); };
    s.on("msg", check);
    check();
  })));
  const clients = [];
  for (const [i, s] of sockets.entries()) {
    clients.push({
      ...spec[i],
      transport: s.io.engine.transport.name,
      where: await s.timeout(ACK_MS).emitWithAck("where"),
      received: received[i],
    });
  }
  finish({ ok: true, clients });
}

main().catch((err) => finish({ ok: false, error: String((err && err.stack) || err) }));
