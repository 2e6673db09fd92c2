// Drives the Django chat example (examples/django_chat) in the system Chromium
// through playwright-core, for tests/test_django_example.py.
//
// Usage: node django_chat_driver.mjs URL USER1:PASSWORD1 USER2:PASSWORD2
//
// Both users log in through Django's login form in their own browser context;
// user 1 opens the chat in two tabs. Each page's socket must connect (cookie
// sent by the browser, upgraded to WebSocket); a message user 1 types must
// appear as "user1: text" on user 2's page; when user 1 logs out in one tab,
// the other tab must show the logged-out notice (its socket ended by the
// server) while user 2 stays connected.
//
// The last line of stdout is a JSON report: {"ok": true, ...} or {"ok": false, "error": ...}.

import { chromium } from "playwright-core";

const [url, first, second] = process.argv.slice(2);
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"];
const STEP_MS = 10_000;
const report = { ok: false, pageErrors: [] };

function credentials(arg) {
  const at = arg.indexOf(":");
  return { name: arg.slice(0, at), password: arg.slice(at + 1) };
}

async function logIn(browser, { name, password }) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (err) => report.pageErrors.push(`${name}: ${err.message}`));
  await page.goto(url);  // redirected to the login form
  await page.fill("#id_username", name);
  await page.fill("#id_password", password);
  await Promise.all([page.waitForURL(url), page.click("button[type=submit]")]);
  return { context, page };
}

async function openTab(context) {
  const page = await context.newPage();
  await page.goto(url);
  return page;
}

// The page's `socket` (a top-level const of its script) is connected over WebSocket.
const upgraded = (page) => page.waitForFunction(
  () => socket.connected && socket.io.engine.transport.name === "websocket", null, { timeout: STEP_MS });

const lines = (page) => page.$$eval("#lines li", (items) => items.map((li) => li.textContent));

const shows = (page, text) => page.waitForFunction(
  (wanted) => [...document.querySelectorAll("#lines li")].some((li) => li.textContent === wanted),
  text, { timeout: STEP_MS });

let browser = null;
try {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  const user1 = credentials(first);
  const user2 = credentials(second);
  const a = await logIn(browser, user1);
  const aOther = await openTab(a.context);
  const b = await logIn(browser, user2);
  await Promise.all([upgraded(a.page), upgraded(aOther), upgraded(b.page)]);

  const text = `hello from a browser ${Date.now()}`;
  await a.page.fill("#text", text);
  await a.page.press("#text", "Enter");
  const line = `${user1.name}: ${text}`;
  await Promise.all([shows(b.page, line), shows(a.page, line), shows(aOther, line)]);

  await Promise.all([a.page.waitForURL(/\/login\/$/), a.page.click("header button[type=submit]")]);
  await shows(aOther, "Logged out. Reload the page to log in again.");
  report.otherUserStillConnected = await b.page.evaluate(() => socket.connected);
  report.linesOfUser2 = await lines(b.page);
  report.ok = report.otherUserStillConnected && report.pageErrors.length === 0;
  if (!report.ok) report.error = "user 2 was disconnected, or a page raised an error";
} catch (err) {
  report.error = String(err && err.stack || err);
} finally {
  if (browser) await browser.close().catch(() => {});
}
console.log(JSON.stringify(report));
process.exit(report.ok ? 0 : 1);
