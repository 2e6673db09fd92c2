// Runs the npm package `socket.io-msgpack-parser` (and its notepack.io) on
// values given by the Python tests, and prints ONE JSON line with the results.
//
// Usage: node codec.mjs REQUEST.json
//   request = {"encode": [value, ...], "decode": [hex, ...]}
//   encode: each value is turned into a JavaScript object (see fromTagged) and
//           encoded by the parser's Encoder; the result is the hex of the one
//           buffer it produces.
//   decode: each hex is fed to the parser's Decoder (which checks the packet
//           as a Socket.IO server or client would); the result is the decoded
//           packet (see toTagged), or {"$throws": message}.
//
// Tags, both ways: {"$bin": hex} a Buffer, {"$arraybuffer": hex} an
// ArrayBuffer, {"$uint8": hex} a Uint8Array of its own, {"$date": ms} a Date,
// {"$undefined": true} undefined, {"$number": "NaN"} NaN and the infinities.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const parser = require("socket.io-msgpack-parser");

function fromTagged(v) {
  if (Array.isArray(v)) return v.map(fromTagged);
  if (v === null || typeof v !== "object") return v;
  if ("$bin" in v) return Buffer.from(v.$bin, "hex");
  if ("$arraybuffer" in v) {
    const b = Buffer.from(v.$arraybuffer, "hex");
    return b.buffer.slice(b.byteOffset, b.byteOffset + b.length);
  }
  if ("$uint8" in v) return new Uint8Array(Buffer.from(v.$uint8, "hex"));
  if ("$date" in v) return new Date(v.$date);
  if ("$undefined" in v) return undefined;
  if ("$number" in v) return Number(v.$number);
  const out = {};
  for (const [k, x] of Object.entries(v)) out[k] = fromTagged(x);
  return out;
}

function toTagged(v) {
  if (v === undefined) return { $undefined: true };
  if (typeof v === "number" && !Number.isFinite(v)) return { $number: String(v) };
  if (v === null || typeof v !== "object") return v;
  if (Buffer.isBuffer(v)) return { $bin: v.toString("hex") };
  if (v instanceof ArrayBuffer) return { $arraybuffer: Buffer.from(v).toString("hex") };
  if (v instanceof Date) return { $date: v.getTime() };
  if (Array.isArray(v)) return v.map(toTagged);
  const out = {};
  for (const [k, x] of Object.entries(v)) out[k] = toTagged(x);
  return out;
}

function decodeOne(hex) {
  const decoder = new parser.Decoder();
  let packet = null;
  decoder.on("decoded", (p) => { packet = p; });
  try {
    decoder.add(Buffer.from(hex, "hex"));
  } catch (err) {
    return { $throws: err.message };
  }
  return toTagged(packet);
}

try {
  const request = JSON.parse(readFileSync(process.argv[2], "utf8"));
  const encoder = new parser.Encoder();
  const encoded = (request.encode || []).map((value) => {
    const parts = encoder.encode(fromTagged(value));
    if (parts.length !== 1) throw new Error(`the encoder gave ${parts.length} parts`);
    return Buffer.from(parts[0]).toString("hex");
  });
  const decoded = (request.decode || []).map(decodeOne);
  console.log(JSON.stringify({ ok: true, encoded, decoded }));
} catch (err) {
  console.log(JSON.stringify({ ok: false, error: String((err && err.stack) || err) }));
  process.exitCode = 1;
}
