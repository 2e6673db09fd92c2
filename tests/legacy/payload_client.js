// Exercises the Engine.IO v3 polling payloads that socket.io-client 2.x in Node
// never uses (it has no XHR2, so it always polls with b64=1): the binary
// payload of XHR2 clients, encoded and decoded by the reference v3 parser
// (engine.io-parser 2.x), against an echoing geventsio engine server.
//
// Usage: node payload_client.js URL   (the server's path is /engine.io/)
// Prints ONE JSON line: {"ok": true, ...} or {"ok": false, "error": ...}.

"use strict";

const parser = require("engine.io-parser");

const base = process.argv[2] + "/engine.io/?EIO=3&transport=polling";

function encodePayload(packets) {
  return new Promise((resolve) => parser.encodePayload(packets, true, resolve));
}

function decodePayload(data) {
  const packets = [];
  parser.decodePayload(data, undefined, (packet) => { packets.push(packet); });
  return packets;
}

function report(packet) {
  const data = Buffer.isBuffer(packet.data) ? { $bin: packet.data.toString("hex") } : packet.data;
  return { type: packet.type, data: data === undefined ? null : data };
}

async function poll(sid) {
  const res = await fetch(`${base}&sid=${sid}`);
  const type = res.headers.get("content-type");
  const body = Buffer.from(await res.arrayBuffer());
  // As engine.io-client 3.x does: binary only when the server says octet-stream.
  const data = type === "application/octet-stream" ? body : body.toString("utf8");
  return { content_type: type, packets: decodePayload(data).map(report) };
}

async function post(sid, packets) {
  const body = await encodePayload(packets);
  const binary = typeof body !== "string";
  const res = await fetch(`${base}&sid=${sid}`, {
    method: "POST",
    headers: { "Content-Type": binary ? "application/octet-stream" : "text/plain;charset=UTF-8" },
    body,
  });
  return { binary, status: res.status, text: await res.text() };
}

(async () => {
  // No b64=1: this client reads binary responses.
  const open = await fetch(base);
  const [handshake] = decodePayload(await open.text());
  const sid = JSON.parse(handshake.data).sid;
  const mixed = [
    { type: "message", data: "héllo 😀 €" },
    { type: "message", data: Buffer.from([0, 1, 2, 255]) },
    { type: "message", data: Buffer.alloc(1500, 7) },
  ];
  const sentMixed = await post(sid, mixed);
  const gotMixed = await poll(sid);
  const text = [{ type: "message", data: "only text 😀" }, { type: "ping" }];
  const sentText = await post(sid, text);
  const gotText = await poll(sid);
  process.stdout.write(JSON.stringify({ ok: true, handshake: report(handshake),
    sent_mixed: sentMixed, got_mixed: gotMixed, sent_text: sentText, got_text: gotText }) + "\n");
})().catch((err) => {
  process.stdout.write(JSON.stringify({ ok: false, error: String(err && err.stack ? err.stack : err) }) + "\n");
  process.exitCode = 1;
});
