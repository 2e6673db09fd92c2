#!/usr/bin/env node
// Load generator for the geventsio benchmarks.
//
// Speaks Engine.IO v4 / Socket.IO v5 by hand (over the `ws` package for
// WebSocket and Node's own `http` with keep-alive agents for long-polling), so
// that the generator stays far cheaper per message than the Python servers it
// drives. One scenario per run:
//
//   node loadgen.js '{"scenario":"echo","port":5000,"clients":10,"inflight":1,"warmup":1,"duration":5}'
//
// Output: one JSON object per line on stdout.
//   {"event":"mark","name":"start"|"stop"}  the measured window starts / ends now
//   {"event":"sync","name":"baseline"|"loaded"}  waits for one line on stdin before going on
//   {"event":"result", ...}                 the last line: the scenario's figures
// run.py samples the server's CPU time at the marks and its RSS at the syncs.
// Every loop is bounded in time (a watchdog ends the process) and in count.
'use strict';

const http = require('http');
const net = require('net');
const readline = require('readline');
const { performance } = require('perf_hooks');
const WebSocket = require('ws');

const cfg = Object.assign({
  scenario: 'echo',
  host: '127.0.0.1',
  port: 5000,
  clients: 10,
  inflight: 1,
  warmup: 1,            // seconds of load before the measured window
  duration: 5,          // seconds in the measured window
  drain: 3,             // seconds to wait for replies still in flight after the window
  concurrency: 50,      // connections opened at once while connecting clients
  window: 8,            // broadcasts in flight (bcast)
  stalled: 0,           // bcast: members that stop reading after joining (slow consumers)
  size: 0,              // bcast: bytes of padding in each broadcast's payload
  stallMB: 8,           // bcast: MB of echoes each stalled member requests and never reads
  bytes: 1024 * 1024,   // payload of big-ws / big-poll
  settle: 2,            // idle: seconds between the last connection and the RSS sample
  connectTimeout: 20,   // seconds for one client's handshake
  maxOps: 50000000,     // hard cap on operations in one run
}, JSON.parse(process.argv[2] || '{}'));

const wsUrl = (port) => `ws://${cfg.host}:${port}/socket.io/?EIO=4&transport=websocket`;
const WS_URL = wsUrl(cfg.port);
// Several server processes (a cluster scenario): clients are spread over `ports` in turn.
const PORTS = cfg.ports || [cfg.port];
const WS_OPTS = { perMessageDeflate: false, skipUTF8Validation: true, maxPayload: 64 * 1024 * 1024 };
const LAT_CAP = 4000000;
const now = () => performance.now();

function out(obj) { process.stdout.write(JSON.stringify(obj) + '\n'); }
const sleep = (s) => new Promise((r) => setTimeout(r, s * 1000));

// Hard limit on the whole run, whatever happens.
const hardLimit = (cfg.warmup + cfg.duration + cfg.drain + cfg.settle + 120) * 1000
  + cfg.clients * 20;
const watchdog = setTimeout(() => {
  out({ event: 'result', scenario: cfg.scenario, ok: false, error: 'watchdog: run exceeded its time limit' });
  process.exit(3);
}, hardLimit);
watchdog.unref();

// -- stdin syncs ------------------------------------------------------------

const stdinLines = [];
let stdinWaiter = null;
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (stdinWaiter) { const w = stdinWaiter; stdinWaiter = null; w(line); } else stdinLines.push(line);
});
function sync(name) {
  out({ event: 'sync', name });
  if (stdinLines.length) return Promise.resolve(stdinLines.shift());
  return new Promise((r) => { stdinWaiter = r; });
}

// -- statistics -------------------------------------------------------------

const stats = {
  errors: 0, unexpectedCloses: 0, pings: 0, connectErrors: 0, lastError: null,
};

class Window {
  constructor() {
    this.lat = new Float64Array(LAT_CAP);
    this.nlat = 0;
    this.ops = 0;
    this.measuring = false;
    this.running = true;
    this.t0 = 0; this.t1 = 0; this.cpu0 = null; this.cpu1 = null;
  }
  record(latencyMs) {
    this.ops++;
    if (this.nlat < LAT_CAP) this.lat[this.nlat++] = latencyMs;
  }
  start() {
    this.ops = 0; this.nlat = 0;
    this.t0 = now(); this.cpu0 = process.cpuUsage();
    this.measuring = true;
    out({ event: 'mark', name: 'start' });
  }
  stop() {
    this.measuring = false;
    this.t1 = now(); this.cpu1 = process.cpuUsage(this.cpu0);
    out({ event: 'mark', name: 'stop' });
  }
  summary() {
    const seconds = (this.t1 - this.t0) / 1000;
    const lat = this.lat.subarray(0, this.nlat).sort();
    const pct = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : null);
    return {
      ops: this.ops,
      seconds,
      rate: seconds > 0 ? this.ops / seconds : 0,
      lat_p50_ms: pct(0.5),
      lat_p99_ms: pct(0.99),
      lat_max_ms: lat.length ? lat[lat.length - 1] : null,
      gen_cpu: this.cpu1 ? (this.cpu1.user + this.cpu1.system) / 1e6 / seconds : null,
    };
  }
}

function fairness(counts) {
  if (!counts.length) return {};
  let min = Infinity, max = 0, sum = 0;
  for (const c of counts) { if (c < min) min = c; if (c > max) max = c; sum += c; }
  const mean = sum / counts.length;
  return { per_client_min: min, per_client_max: max, fair_min_over_mean: mean ? min / mean : null };
}

// -- WebSocket client -------------------------------------------------------

class WsClient {
  constructor(url = WS_URL) {
    this.url = url;
    this.ws = null;
    this.connected = false;
    this.closing = false;
    this.closed = false;
    this.count = 0;
    this.onText = null;   // (string) => void, for packets after the namespace CONNECT
    this.onBinary = null; // (Buffer) => void
    this.onClosed = null;
  }

  // Resolves once the namespace CONNECT answer ("40{...}") arrives.
  connect() {
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (err) => { if (!settled) { settled = true; clearTimeout(timer); reject(err); } };
      const timer = setTimeout(() => { fail(new Error('connect timeout')); this.kill(); },
        cfg.connectTimeout * 1000);
      const ws = this.ws = new WebSocket(this.url, WS_OPTS);
      ws.on('message', (data, isBinary) => {
        if (isBinary) { if (this.onBinary) this.onBinary(data); return; }
        const s = data.toString();
        const c = s.charCodeAt(0);
        if (c === 52) { // "4": a Socket.IO packet
          if (this.connected) { if (this.onText) this.onText(s); return; }
          if (s.startsWith('40')) {
            this.connected = true; settled = true; clearTimeout(timer); resolve(this);
          } else if (s.startsWith('44')) {
            fail(new Error('namespace refused: ' + s));
          }
        } else if (c === 50) { // "2": ping
          stats.pings++;
          ws.send('3');
        } else if (c === 48) { // "0": open
          ws.send('40');
        }
      });
      ws.on('error', (err) => { stats.errors++; stats.lastError = String(err && err.message); fail(err); });
      ws.on('close', (code) => {
        this.closed = true;
        if (!this.closing) { stats.unexpectedCloses++; stats.lastError = `unexpected close ${code}`; }
        fail(new Error(`closed (${code}) before connecting`));
        if (this.onClosed) this.onClosed();
      });
    });
  }

  send(s) { this.ws.send(s); }

  // What a socket.io client does on disconnect(): leave the namespace, close the transport.
  close() {
    if (this.closing || this.closed) return;
    this.closing = true;
    try { this.ws.send('41'); this.ws.close(1000); } catch (e) { this.kill(); }
  }

  kill() { this.closing = true; try { this.ws.terminate(); } catch (e) { /* gone */ } }
}

async function connectAll(n, concurrency, factory, tolerateFailures = false) {
  const clients = [];
  let next = 0;
  let failures = 0;
  async function worker() {
    while (next < n) {
      next++;
      try {
        clients.push(await factory());
      } catch (err) {
        stats.connectErrors++;
        stats.lastError = String(err && err.message);
        failures++;
        if (!tolerateFailures || failures > Math.max(10, n / 100)) throw err;
      }
    }
  }
  const t0 = now();
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  return { clients, seconds: (now() - t0) / 1000 };
}

async function wsClient(url) {
  const c = new WsClient(url);
  await c.connect();
  return c;
}

// Clients of a cluster scenario: the next one connects to the next port.
let nextPort = 0;
const spreadClient = () => wsClient(wsUrl(PORTS[nextPort++ % PORTS.length]));

// Closes every client and waits (bounded) for their transports to end.
async function closeAll(clients, seconds = 3) {
  for (const c of clients) c.close();
  const deadline = now() + seconds * 1000;
  while (clients.some((c) => !c.closed) && now() < deadline) await sleep(0.02);
  for (const c of clients) if (!c.closed) c.kill();
}

// Warm-up, then the measured window, then a bounded drain of what is in flight.
async function runWindow(win, outstanding) {
  await sleep(cfg.warmup);
  win.start();
  await sleep(cfg.duration);
  win.stop();
  win.running = false;
  const deadline = now() + cfg.drain * 1000;
  while (outstanding() > 0 && now() < deadline) await sleep(0.01);
  return outstanding();
}

// -- scenarios ----------------------------------------------------------------

// echo / ack: every client keeps `inflight` events outstanding.
async function scenarioEcho(withAck) {
  const win = new Window();
  const sent = new Map(); // seq -> send time
  let seq = 1;
  const { clients, seconds: connectSeconds } = await connectAll(cfg.clients, cfg.concurrency, wsClient);
  const prefix = withAck ? null : '42["echo",';
  for (const c of clients) {
    const sendOne = () => {
      if (seq > cfg.maxOps) { win.running = false; return; }
      const s = seq++;
      sent.set(s, now());
      c.send(withAck ? `42${s}["echoack",${s}]` : `42["echo",${s}]`);
    };
    c.onText = (msg) => {
      let s;
      if (withAck) {
        if (!msg.startsWith('43')) return;
        s = parseInt(msg.slice(2), 10);
      } else {
        if (!msg.startsWith(prefix)) return;
        s = parseInt(msg.slice(prefix.length), 10);
      }
      const t = sent.get(s);
      if (t === undefined) return;
      sent.delete(s);
      if (win.measuring) { win.record(now() - t); c.count++; }
      if (win.running) sendOne();
    };
    c.kick = () => { for (let i = 0; i < cfg.inflight; i++) sendOne(); };
  }
  for (const c of clients) c.kick();
  const lost = await runWindow(win, () => sent.size);
  await closeAll(clients);
  return Object.assign(win.summary(), fairness(clients.map((c) => c.count)),
    { lost, connect_seconds: connectSeconds, unit: 'events/s' });
}

// bcast: `clients` members join a room; a driver keeps `window` broadcasts in flight.
// With `ports` (several server processes), the members are spread over them and the
// driver talks to the first: a broadcast reaches the others' members through Redis.
// The first `stalled` members then stop reading (their TCP windows fill up): a
// broadcast is complete when every other member has it.
async function scenarioBcast() {
  const win = new Window();
  const n = cfg.clients;
  const { clients, seconds: connectSeconds } = await connectAll(n, cfg.concurrency, spreadClient);
  // Join the room, acknowledged, so every member is in it before the first broadcast.
  await Promise.all(clients.map((c, i) => new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('join timeout')), cfg.connectTimeout * 1000);
    c.onText = (msg) => { if (msg.startsWith(`43${i}[`)) { clearTimeout(t); resolve(); } };
    c.send(`42${i}["join","bench"]`);
  })));
  const driver = await wsClient(WS_URL);
  const stalled = clients.slice(0, cfg.stalled);
  const members = clients.slice(cfg.stalled);
  // Each stalled member asks for `stallMB` one-megabyte echoes it will never
  // read: past the kernel's buffers they wait in the server, as a slow
  // consumer's backlog would after a while.
  const mb = 'y'.repeat(1000000);
  for (const c of stalled) {
    c.closing = true; // the server may disconnect it: that is expected
    c.onText = null;
    c.ws._socket.pause();
    for (let i = 0; i < cfg.stallMB; i++) c.send(`42["echo","${mb}"]`);
  }
  const sentAt = new Map(); // broadcast seq -> [send time, deliveries so far]
  let seq = 1;
  let incomplete = 0;
  const pad = cfg.size ? '|' + 'x'.repeat(cfg.size) : '';
  const sendOne = () => {
    if (seq > cfg.maxOps) { win.running = false; return; }
    const s = seq++;
    sentAt.set(s, [now(), 0]);
    driver.send(pad ? `42["bcast","bench","${s}${pad}"]` : `42["bcast","bench",${s}]`);
  };
  const prefix = pad ? '42["msg","' : '42["msg",';
  for (const c of members) {
    c.onText = (msg) => {
      if (!msg.startsWith(prefix)) return;
      const s = parseInt(msg.slice(prefix.length), 10);
      const entry = sentAt.get(s);
      if (entry === undefined) return;
      if (win.measuring) { win.record(now() - entry[0]); c.count++; }
      if (++entry[1] === members.length) {
        sentAt.delete(s);
        if (win.running) sendOne();
      }
    };
  }
  // A broadcast some member never receives must not stall the window for ever.
  const reaper = setInterval(() => {
    const old = now() - 10000;
    for (const [s, entry] of sentAt) {
      if (entry[0] < old) { sentAt.delete(s); incomplete++; if (win.running) sendOne(); }
    }
  }, 500);
  for (let i = 0; i < cfg.window; i++) sendOne();
  const lost = await runWindow(win, () => sentAt.size);
  clearInterval(reaper);
  await closeAll([...clients, driver]);
  return Object.assign(win.summary(), fairness(members.map((c) => c.count)),
    { lost_broadcasts: lost + incomplete, connect_seconds: connectSeconds, unit: 'deliveries/s',
      stalled_closed: stalled.filter((c) => c.closed).length });
}

// A whole handshake over a raw TCP socket: the HTTP upgrade, Engine.IO open, Socket.IO
// CONNECT to "/", then "41" and a close frame, the way a client leaves. Written by hand
// (not with `ws`) because per connection the `ws` client costs the generator about as
// much CPU as the server spends, and the generator must not become the bottleneck.
const UPGRADE_REQUEST = Buffer.from(
  `GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: ${cfg.host}:${cfg.port}\r\n`
  + 'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'
  + 'Sec-WebSocket-Version: 13\r\n\r\n');

function maskedFrame(opcode, text) {
  // Client frames must be masked; a zero mask key leaves the payload as it is.
  const payload = Buffer.from(text);
  return Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | payload.length, 0, 0, 0, 0]), payload]);
}
const FRAME_40 = maskedFrame(1, '40');
const FRAME_3 = maskedFrame(1, '3');
const FRAME_LEAVE = Buffer.concat([maskedFrame(1, '41'), maskedFrame(8, '\x03\xe8')]);

function rawHandshake(onClosed) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(cfg.port, cfg.host);
    sock.setNoDelay(true);
    let buf = null;
    let stage = 0; // 0: HTTP response, 1: Engine.IO open, 2: namespace CONNECT, 3: done
    let settled = false;
    const finish = (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) { sock.destroy(); reject(err); } else resolve();
    };
    const timer = setTimeout(() => finish(new Error('connect timeout')), cfg.connectTimeout * 1000);
    sock.on('connect', () => sock.write(UPGRADE_REQUEST));
    sock.on('error', (err) => { if (stage < 3) { stats.errors++; finish(err); } });
    sock.on('close', () => { onClosed(); finish(new Error('closed before connecting')); });
    sock.on('data', (d) => {
      buf = buf ? Buffer.concat([buf, d]) : d;
      if (stage === 0) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        if (buf.toString('latin1', 0, 13) !== 'HTTP/1.1 101 ') {
          finish(new Error('upgrade refused: ' + buf.toString('latin1', 0, Math.min(end, 80))));
          return;
        }
        buf = buf.subarray(end + 4);
        stage = 1;
      }
      while (buf.length >= 2) {
        let len = buf[1] & 0x7f;
        let off = 2;
        if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
        else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
        if (buf.length < off + len) return;
        const op = buf[0] & 0x0f;
        const text = op === 1 ? buf.toString('utf8', off, off + len) : '';
        buf = buf.subarray(off + len);
        if (op === 8) { sock.end(); return; }
        if (op !== 1) continue;
        if (stage === 1 && text[0] === '0') {
          sock.write(FRAME_40);
          stage = 2;
        } else if (stage === 2 && text.startsWith('40')) {
          stage = 3;
          sock.write(FRAME_LEAVE);
          finish(null);
        } else if (text === '2') {
          sock.write(FRAME_3);
        }
      }
    });
  });
}

// connect: `concurrency` loops of: open, CONNECT to "/", leave ("41" + close frame).
async function scenarioConnect() {
  const win = new Window();
  let open = 0; // transports not closed yet
  let failures = 0;
  const loop = async () => {
    let attempts = 0;
    while (win.running && attempts++ < cfg.maxOps) {
      while (open > 2000 && win.running) await sleep(0.005); // bounded: closes must keep up
      open++;
      const t = now();
      try {
        await rawHandshake(() => { open--; });
      } catch (err) {
        failures++;
        stats.connectErrors++;
        stats.lastError = String(err && err.message);
        if (failures > 1000) { win.running = false; throw err; }
        continue;
      }
      if (win.measuring) win.record(now() - t);
    }
  };
  let loopError = null;
  const loops = Array.from({ length: cfg.concurrency }, () => loop().catch((err) => { loopError = err; }));
  await runWindow(win, () => 0);
  await Promise.all(loops);
  if (loopError) throw loopError;
  const deadline = now() + 5000;
  while (open > 0 && now() < deadline) await sleep(0.02);
  return Object.assign(win.summary(), { still_open: open, unit: 'handshakes/s' });
}

// idle: RSS before, then `clients` connected clients doing nothing but answering pings.
async function scenarioIdle() {
  const warm = await connectAll(20, 20, wsClient);
  await closeAll(warm.clients);
  await sleep(0.5);
  await sync('baseline');
  const { clients, seconds } = await connectAll(cfg.clients, cfg.concurrency, wsClient, true);
  await sleep(cfg.settle);
  const alive = clients.filter((c) => !c.closed).length;
  await sync('loaded');
  const aliveAfter = clients.filter((c) => !c.closed).length;
  await closeAll(clients, 10);
  return {
    connected: alive, connected_after_sample: aliveAfter, connect_seconds: seconds,
    connect_rate: clients.length / seconds, unit: 'KB/connection',
  };
}

// -- long-polling client ----------------------------------------------------

function httpRequest(agent, method, path, body) {
  return new Promise((resolve, reject) => {
    const headers = {};
    if (body !== undefined) {
      headers['Content-Type'] = 'text/plain;charset=UTF-8';
      headers['Content-Length'] = Buffer.byteLength(body);
    }
    const req = http.request({ host: cfg.host, port: cfg.port, method, path, agent, headers }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.setTimeout(60000, () => req.destroy(new Error('http timeout')));
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

class PollClient {
  constructor() {
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
    this.sid = null;
    this.queue = [];
    this.posting = false;
    this.stopped = false;
    this.count = 0;
    this.onPacket = null; // (string) => void, for Socket.IO packets after CONNECT
    this.connectedResolve = null;
  }

  path() { return `/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(this.sid)}`; }

  async connect() {
    const res = await httpRequest(this.agent, 'GET', '/socket.io/?EIO=4&transport=polling');
    if (res.status !== 200 || res.body[0] !== '0') throw new Error(`handshake ${res.status} ${res.body.slice(0, 80)}`);
    this.sid = JSON.parse(res.body.slice(1)).sid;
    const connected = new Promise((resolve, reject) => {
      this.connectedResolve = resolve;
      setTimeout(() => reject(new Error('namespace connect timeout')), cfg.connectTimeout * 1000);
    });
    this.post('40');
    this.getLoop();
    await connected;
    return this;
  }

  async getLoop() {
    let polls = 0;
    while (!this.stopped && polls++ < cfg.maxOps) {
      let res;
      try {
        res = await httpRequest(this.agent, 'GET', this.path());
      } catch (err) {
        if (!this.stopped) { stats.errors++; stats.lastError = 'GET: ' + err.message; }
        return;
      }
      if (res.status !== 200) {
        if (!this.stopped) { stats.unexpectedCloses++; stats.lastError = `GET ${res.status} ${res.body.slice(0, 80)}`; }
        return;
      }
      for (const p of res.body.split('\x1e')) this.handle(p);
    }
  }

  handle(p) {
    const c = p.charCodeAt(0);
    if (c === 52) { // "4"
      if (this.connectedResolve && p.startsWith('40')) {
        const r = this.connectedResolve; this.connectedResolve = null; r();
      } else if (this.onPacket) this.onPacket(p);
    } else if (c === 98) { // "b": base64 binary
      if (this.onPacket) this.onPacket(p);
    } else if (c === 50) { // "2": ping
      stats.pings++;
      this.post('3');
    } else if (c === 49) { // "1": close
      if (!this.stopped) { stats.unexpectedCloses++; stats.lastError = 'server closed a polling session'; }
      this.stopped = true;
    }
  }

  // Never two POSTs at once per session: packets queue and leave in the next body.
  post(packet) {
    this.queue.push(packet);
    this.flush();
  }

  flush() {
    if (this.posting || !this.queue.length || this.stopped) return;
    this.posting = true;
    const body = this.queue.join('\x1e');
    this.queue = [];
    httpRequest(this.agent, 'POST', this.path(), body).then((res) => {
      if (res.status !== 200 && !this.stopped) {
        stats.errors++; stats.lastError = `POST ${res.status} ${res.body.slice(0, 80)}`;
      }
    }, (err) => {
      if (!this.stopped) { stats.errors++; stats.lastError = 'POST: ' + err.message; }
    }).finally(() => { this.posting = false; this.flush(); });
  }

  async close() {
    if (this.stopped) { this.agent.destroy(); return; }
    this.stopped = true;
    this.queue = [];
    const deadline = now() + 2000; // one POST at a time, the close packet included
    while (this.posting && now() < deadline) await sleep(0.005);
    try { await httpRequest(this.agent, 'POST', this.path(), '1'); } catch (e) { /* gone */ }
    await sleep(0.05);
    this.agent.destroy();
  }
}

async function pollClient() {
  const c = new PollClient();
  await c.connect();
  return c;
}

// poll-echo: like echo, over long-polling only.
async function scenarioPollEcho() {
  const win = new Window();
  const sent = new Map();
  let seq = 1;
  const { clients, seconds: connectSeconds } = await connectAll(cfg.clients, cfg.concurrency, pollClient);
  const prefix = '42["echo",';
  for (const c of clients) {
    const sendOne = () => {
      if (seq > cfg.maxOps) { win.running = false; return; }
      const s = seq++;
      sent.set(s, now());
      c.post(`42["echo",${s}]`);
    };
    c.onPacket = (p) => {
      if (!p.startsWith(prefix)) return;
      const s = parseInt(p.slice(prefix.length), 10);
      const t = sent.get(s);
      if (t === undefined) return;
      sent.delete(s);
      if (win.measuring) { win.record(now() - t); c.count++; }
      if (win.running) sendOne();
    };
    for (let i = 0; i < cfg.inflight; i++) sendOne();
  }
  const lost = await runWindow(win, () => sent.size);
  await Promise.all(clients.map((c) => c.close()));
  return Object.assign(win.summary(), fairness(clients.map((c) => c.count)),
    { lost, connect_seconds: connectSeconds, unit: 'events/s' });
}

// -- 1 MB binary round trips ------------------------------------------------

const BIN_HEADER = '451-["echo",{"_placeholder":true,"num":0}]';

function payload() {
  const buf = Buffer.allocUnsafe(cfg.bytes);
  let x = 0x12345678;
  for (let i = 0; i < buf.length; i++) { x = (x * 1103515245 + 12345) >>> 0; buf[i] = x >>> 24; }
  return buf;
}

// One client, one 1 MB binary event at a time, echoed back as a binary event.
async function roundTrips(sendEvent, win) {
  const started = now();
  let count = 0;
  while (count++ < 100000 && now() - started < (cfg.warmup + cfg.duration) * 1000 + 60000) {
    const measuring = win.measuring;
    const t = now();
    await sendEvent();
    if (measuring && win.measuring) win.record(now() - t);
    if (!win.running) break;
  }
}

async function timedRoundTrips(sendEvent) {
  const win = new Window();
  // Warm-up counts in round trips too: one 1 MB trip can take longer than the warm-up.
  await sendEvent();
  let loopError = null;
  const loop = roundTrips(sendEvent, win).catch((err) => { loopError = err; win.running = false; });
  await sleep(cfg.warmup);
  win.start();
  await sleep(cfg.duration);
  // The window ends with the round trip in progress, so that a slow server still
  // gets at least one complete measured trip.
  const waitStart = now();
  while (win.ops === 0 && win.running && now() - waitStart < 60000) await sleep(0.01);
  win.stop();
  win.running = false;
  await loop;
  if (loopError) throw loopError;
  return win;
}

async function scenarioBigWs() {
  const data = payload();
  const c = await wsClient();
  let pending = null;
  let header = false;
  c.onText = (msg) => { if (msg === BIN_HEADER) header = true; };
  c.onBinary = (buf) => {
    if (!header || !pending) return;
    header = false;
    const p = pending; pending = null;
    if (buf.length !== data.length) p.reject(new Error(`echoed ${buf.length} bytes, sent ${data.length}`));
    else p.resolve();
  };
  const sendEvent = () => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('1 MB echo timeout')), 60000);
    pending = { resolve: () => { clearTimeout(timer); resolve(); }, reject: (e) => { clearTimeout(timer); reject(e); } };
    c.send(BIN_HEADER);
    c.ws.send(data, { binary: true });
  });
  const win = await timedRoundTrips(sendEvent);
  await closeAll([c]);
  return Object.assign(win.summary(), { bytes: data.length, unit: 'round trips/s' });
}

async function scenarioBigPoll() {
  const data = payload();
  const b64 = data.toString('base64');
  const c = await pollClient();
  let pending = null;
  let header = false;
  c.onPacket = (p) => {
    if (p === BIN_HEADER) { header = true; return; }
    if (p[0] !== 'b' || !header || !pending) return;
    header = false;
    const got = Buffer.from(p.slice(1), 'base64');
    const x = pending; pending = null;
    if (got.length !== data.length) x.reject(new Error(`echoed ${got.length} bytes, sent ${data.length}`));
    else x.resolve();
  };
  const sendEvent = () => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('1 MB echo timeout')), 60000);
    pending = { resolve: () => { clearTimeout(timer); resolve(); }, reject: (e) => { clearTimeout(timer); reject(e); } };
    c.post(`${BIN_HEADER}\x1eb${b64}`);
  });
  const win = await timedRoundTrips(sendEvent);
  await c.close();
  return Object.assign(win.summary(), { bytes: data.length, unit: 'round trips/s' });
}

// -- main -------------------------------------------------------------------

const SCENARIOS = {
  echo: () => scenarioEcho(false),
  ack: () => scenarioEcho(true),
  bcast: scenarioBcast,
  connect: scenarioConnect,
  idle: scenarioIdle,
  'poll-echo': scenarioPollEcho,
  'big-ws': scenarioBigWs,
  'big-poll': scenarioBigPoll,
};

async function main() {
  const run = SCENARIOS[cfg.scenario];
  if (!run) throw new Error(`unknown scenario ${cfg.scenario}; one of ${Object.keys(SCENARIOS).join(', ')}`);
  const result = await run();
  out(Object.assign({ event: 'result', scenario: cfg.scenario, ok: true }, result, {
    errors: stats.errors,
    connect_errors: stats.connectErrors,
    unexpected_closes: stats.unexpectedCloses,
    pings: stats.pings,
    last_error: stats.lastError,
  }));
}

main().then(() => process.exit(0), (err) => {
  out({
    event: 'result', scenario: cfg.scenario, ok: false, error: String(err && err.stack || err),
    errors: stats.errors, connect_errors: stats.connectErrors,
    unexpected_closes: stats.unexpectedCloses, last_error: stats.lastError,
  });
  process.exit(1);
});
