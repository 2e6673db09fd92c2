// socket.io-client 2.x in headless Chromium against a geventsio server with
// allow_eio3=True. Unlike Node, a browser has XHR2: the client polls without
// b64=1, so binary travels in the v3 *binary* payloads (responses and POST
// bodies as application/octet-stream). Prints ONE JSON line on stdout.
//
// Usage: node browser_client.js URL TRANSPORTS
//   URL         a page of the server (same origin as its /socket.io/ endpoint)
//   TRANSPORTS  polling | websocket | default (polling, then the upgrade)

"use strict";

const path = require("node:path");
const { chromium } = require("playwright-core");

const [url, transports] = process.argv.slice(2);
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const CLIENT_JS = path.join(__dirname, "node_modules", "socket.io-client", "dist", "socket.io.js");
const TIMEOUT_MS = 15000;

function finish(report, code) {
  process.stdout.write(JSON.stringify(report) + "\n", () => process.exit(code));
}

setTimeout(() => finish({ ok: false, error: `timed out after ${TIMEOUT_MS} ms` }, 1), TIMEOUT_MS).unref();

(async () => {
  let report;
  const browser = await chromium.launch({ executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"] });
  try {
    const page = await browser.newPage();
    const errors = [];
    const polls = []; // [method, request content type, response content type] of each polling request
    page.on("pageerror", (err) => errors.push(err.message));
    page.on("response", (res) => {
      const req = res.request();
      if (req.url().includes("/socket.io/") && req.url().includes("transport=polling")) {
        polls.push([req.method(), req.headers()["content-type"] || null, res.headers()["content-type"] || null]);
      }
    });
    await page.goto(url);
    await page.addScriptTag({ path: CLIENT_JS });
    const result = await page.evaluate(async (mode) => {
      const hex = (v) => Array.from(new Uint8Array(v), (b) => b.toString(16).padStart(2, "0")).join("");
      const opts = { reconnection: false, forceNew: true };
      if (mode !== "default") opts.transports = [mode];
      const socket = io(location.origin, opts);
      await new Promise((resolve, reject) => {
        socket.once("connect", resolve);
        socket.once("connect_error", (e) => reject(new Error(`connect_error: ${e}`)));
      });
      const query = socket.io.engine.transport.query;
      const blob = new Uint8Array([0, 1, 2, 250, 255]);
      const echo = await new Promise((resolve) => socket.emit("echo", "b ✓ 😀", blob.buffer,
        (...args) => resolve(args)));
      if (mode === "default" && socket.io.engine.transport.name !== "websocket") {
        await new Promise((resolve) => socket.io.engine.once("upgrade", resolve));
      }
      const pushed = new Promise((resolve) => socket.once("pushed", (...args) => resolve(args)));
      socket.emit("push");
      const got = await pushed;
      const transport = socket.io.engine.transport.name;
      socket.close();
      return {
        transport, b64_in_first_query: query.b64 !== undefined,
        echo: [echo[0], hex(echo[1])], echo_binary_type: Object.prototype.toString.call(echo[1]),
        pushed: [got[0].text, hex(got[0].bin), hex(got[1])],
      };
    }, transports);
    report = { ok: errors.length === 0, errors, polls, ...result };
  } finally {
    await browser.close();
  }
  finish(report, report.ok ? 0 : 1);
})().catch((err) => finish({ ok: false, error: String(err && err.stack ? err.stack : err) }, 1));
