// Drives the Flask chat example (examples/flask_chat) in the system Chromium
// through playwright-core, for tests/test_browser_chat.py.
//
// Usage: node chat_driver.mjs URL OUTPUT_DIR [SCENARIO]
//
// SCENARIO "restart" (the default): two users (two isolated browser contexts)
// log in, join the room "gevent", chat, see each other typing and exchange a
// direct message. Then the driver prints READY_FOR_RESTART and waits: both
// pages must show the reconnect banner once the server dies, and after the
// line RESTARTED arrives on stdin (the Python side restarts the server on the
// same port first) the banner must go away and the chat must work again.
//
// SCENARIO "close": two users in #lobby; when one closes the tab, the other's
// member list must drop them and show a "went offline" notice.
//
// stdout, one line each: "LOG <text>", "READY_FOR_RESTART",
// "SCREENSHOT <path>", then "DONE" (exit 0) or "FAIL <reason>" (exit 1).

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const [url, outDir, scenario = "restart"] = process.argv.slice(2);
if (!url || !outDir || !["restart", "close"].includes(scenario)) {
  console.log("FAIL usage: node chat_driver.mjs URL OUTPUT_DIR [restart|close]");
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
];
const STEP_MS = 10_000;      // one UI expectation
const RESTART_MS = 20_000;   // the server's restart and the clients' reconnection
const WATCHDOG_MS = 45_000;  // the whole run

const started = Date.now();
const log = (text) => console.log(`LOG ${((Date.now() - started) / 1000).toFixed(1)}s ${text}`);
const pageErrors = [];

let browser = null;
const watchdog = setTimeout(() => {
  console.log(`FAIL watchdog: the driver ran for more than ${WATCHDOG_MS / 1000} s`);
  process.exit(1);
}, WATCHDOG_MS);

// -- stdin: the restart signal --------------------------------------------

const stdinLines = [];
const stdinWaiters = [];
let stdinClosed = false;
createInterface({ input: process.stdin })
  .on("line", (line) => {
    const waiter = stdinWaiters.shift();
    if (waiter) waiter.resolve(line.trim());
    else stdinLines.push(line.trim());
  })
  .on("close", () => {
    stdinClosed = true;
    for (const w of stdinWaiters.splice(0)) w.reject(new Error("stdin closed"));
  });

function readLine(timeoutMs) {
  if (stdinLines.length) return Promise.resolve(stdinLines.shift());
  if (stdinClosed) return Promise.reject(new Error("stdin closed"));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no line on stdin within ${timeoutMs} ms`)), timeoutMs);
    stdinWaiters.push({
      resolve: (v) => { clearTimeout(timer); resolve(v); },
      reject: (e) => { clearTimeout(timer); reject(e); },
    });
  });
}

async function expectLine(expected, timeoutMs) {
  const line = await readLine(timeoutMs);
  if (line !== expected) throw new Error(`expected ${expected} on stdin, got ${JSON.stringify(line)}`);
}

// -- the user's actions --------------------------------------------------------

async function openChat(nick) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 }, locale: "en-US" });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  page.on("pageerror", (err) => pageErrors.push(`${nick}: ${err.message}`));
  await page.goto(url, { timeout: STEP_MS });
  await page.locator("#nick").fill(nick);
  await page.locator("#login-form button[type=submit]").click();
  await page.locator("#app").waitFor({ state: "visible" });
  await page.locator("#conv-title", { hasText: /^#lobby$/ }).waitFor();
  log(`${nick} logged in and is in #lobby`);
  return page;
}

async function joinRoom(page, room) {
  await page.locator("#room-name").fill(room);
  await page.locator("#join-form button").click();
  await page.locator("#conv-title", { hasText: new RegExp(`^#${room}$`) }).waitFor();
}

async function say(page, text) {
  await page.locator("#text").fill(text);
  await page.locator("#text").press("Enter");
}

const bubble = (page, text) => page.locator("#messages .msg .bubble", { hasText: text });
const member = (page, nick) => page.locator(`#members .member[data-dm="${nick}"]`);

async function shot(page, name) {
  const path = join(outDir, name);
  await page.screenshot({ path, timeout: STEP_MS, animations: "disabled" });
  console.log(`SCREENSHOT ${path}`);
}

// -- the scenario ------------------------------------------------------------------

async function launch() {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true, timeout: 15_000 });
  log(`chromium ${browser.version()}`);
}

async function closeScenario() {
  await launch();
  const alice = await openChat("alice");
  const bob = await openChat("bob");
  await member(alice, "bob").waitFor();
  log("alice sees bob in #lobby");
  await bob.context().close();
  log("bob closed his tab");
  await member(alice, "bob").waitFor({ state: "detached", timeout: 5000 });
  await alice.locator("#messages .msg.system", { hasText: "bob went offline" }).waitFor({ timeout: 1000 });
  log("alice's member list dropped bob");
  if (pageErrors.length) throw new Error(`uncaught errors in the pages: ${pageErrors.join("; ")}`);
}

async function restartScenario() {
  await launch();
  const alice = await openChat("alice");
  const bob = await openChat("bob");

  await joinRoom(alice, "gevent");
  await joinRoom(bob, "gevent");
  await member(alice, "bob").waitFor();
  await member(bob, "alice").waitFor();
  log("both are in #gevent and see each other in the member list");

  await say(alice, "hello from alice");
  await bubble(bob, "hello from alice").waitFor();
  log("bob sees alice's message");

  await bob.locator("#text").pressSequentially("hi alice, welcome to gevent", { delay: 10 });
  await alice.locator("#typing", { hasText: "bob is typing" }).waitFor();
  log("alice sees bob typing");
  await bob.locator("#text").press("Enter");
  await bubble(alice, "hi alice, welcome to gevent").waitFor();
  await alice.locator("#typing", { hasText: "typing" }).waitFor({ state: "detached" });
  log("alice sees bob's message and the typing notice is gone");

  await member(alice, "bob").click();
  await alice.locator("#conv-title", { hasText: /^@bob$/ }).waitFor();
  await say(alice, "psst bob, this one is just for you");
  await bubble(alice, "psst bob, this one is just for you").waitFor();
  await bob.locator('#dm-list [data-key="@alice"] .badge', { hasText: "1" }).waitFor();
  await bob.locator('#dm-list [data-key="@alice"]').click();
  await bubble(bob, "psst bob, this one is just for you").waitFor();
  log("bob got alice's direct message");
  await alice.locator('#room-list [data-key="#gevent"]').click();
  await bob.locator('#room-list [data-key="#gevent"]').click();
  await bubble(alice, "hello from alice").waitFor();

  // The server goes away: both pages must say so, then recover once it is back.
  const offline = Promise.all([alice, bob].map(
    (p) => p.locator("#banner.offline").waitFor({ state: "visible", timeout: RESTART_MS })));
  console.log("READY_FOR_RESTART");
  await offline;
  log("both pages show the reconnect banner");
  await shot(bob, "chat-reconnecting.png");
  await expectLine("RESTARTED", RESTART_MS);
  log("the server is back");
  await Promise.all([alice, bob].map(
    (p) => p.locator("#banner").waitFor({ state: "hidden", timeout: RESTART_MS })));
  log("both pages reconnected and the banner is gone");

  await member(alice, "bob").waitFor();
  await member(bob, "alice").waitFor();
  await say(bob, "bob is back after the restart");
  await bubble(alice, "bob is back after the restart").waitFor();
  await say(alice, "welcome back, the chat survived a server restart");
  await bubble(bob, "welcome back, the chat survived").waitFor();
  log("chatting works again after the restart");

  await shot(alice, "chat-desktop.png");
  await bob.setViewportSize({ width: 390, height: 780 });
  await shot(bob, "chat-phone.png");
  await bob.locator("#menu").click();
  await bob.locator("#sidebar #members-box").waitFor({ state: "visible" });
  await shot(bob, "chat-phone-menu.png");

  if (pageErrors.length) throw new Error(`uncaught errors in the pages: ${pageErrors.join("; ")}`);
}

let failed = null;
try {
  await (scenario === "close" ? closeScenario() : restartScenario());
} catch (err) {
  failed = err;
  if (browser) {
    for (const [i, ctx] of browser.contexts().entries()) {
      for (const page of ctx.pages()) {
        const path = join(outDir, `failure-${i}.png`);
        try {
          await page.screenshot({ path, timeout: 5000 });
          console.log(`SCREENSHOT ${path}`);
        } catch { /* the page may be gone */ }
      }
    }
  }
}
if (browser) await browser.close().catch(() => {});
clearTimeout(watchdog);
if (failed) {
  const reason = String(failed.message || failed).replace(/\u001b\[[0-9;]*m/g, "");
  console.log(`FAIL ${reason.split("\n").join(" | ")}`);
  if (pageErrors.length) console.log(`LOG page errors: ${pageErrors.join("; ")}`);
  process.exit(1);
}
console.log("DONE");
process.exit(0);
