// Opens the real Socket.IO Admin UI web app in the system Chromium and logs it in
// to a geventsio server, for tests/test_admin.py.
//
// Usage: node admin_ui.mjs UI_URL SERVER_URL USER PASSWORD OUTPUT_DIR
//
// Two socket.io-client clients connect to SERVER_URL first. The page then
// logs in through its connection form, and must show the server on its
// Servers page, the dashboard's histograms, both clients on its Sockets page,
// join a client to a room from that socket's page (the server must have done
// it), and show on its Events page an event a client emits after the login.
// stdout, one line each: "LOG <text>", "SCREENSHOT <path>", then "DONE"
// (exit 0) or "FAIL <reason>" (exit 1, with a screenshot of the page as it was).

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { io } from "socket.io-client";

const [uiUrl, serverUrl, user, password, outDir] = process.argv.slice(2);
if (!outDir) {
  console.log("FAIL usage: node admin_ui.mjs UI_URL SERVER_URL USER PASSWORD OUTPUT_DIR");
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
];
const STEP_MS = 10_000;
const started = Date.now();
const log = (text) => console.log(`LOG ${((Date.now() - started) / 1000).toFixed(1)}s ${text}`);

let browser = null;
let page = null;
const clients = [];
const watchdog = setTimeout(() => fail(new Error("watchdog: more than 45 s")), 45_000);

async function shoot(name) {
  const path = join(outDir, name);
  await page.screenshot({ path, timeout: STEP_MS, animations: "disabled" });
  console.log(`SCREENSHOT ${path}`);
}

async function fail(err) {
  console.log(`FAIL ${String(err && err.stack || err).replace(/\n/g, " | ")}`);
  try { if (page) await shoot("admin-ui-failure.png"); } catch (e) { /* the page is gone */ }
  process.exit(1);
}

function connectClient(query) {
  const socket = io(serverUrl, { forceNew: true, reconnection: false, transports: ["websocket"], query });
  clients.push(socket);
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", reject);
  });
}

async function main() {
  const alice = await connectClient({ user: "alice" });
  const bob = await connectClient({ user: "bob" });
  await alice.timeout(STEP_MS).emitWithAck("hello", "from alice");
  log(`clients connected: ${alice.id} ${bob.id}`);

  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true, timeout: 15_000 });
  const context = await browser.newContext({ viewport: { width: 1400, height: 860 }, locale: "en-US" });
  page = await context.newPage();
  page.on("pageerror", (err) => log(`page error: ${err.message}`));
  // The app links fonts and icons from CDNs; this machine has no network beyond loopback.
  await page.route((url) => !["127.0.0.1", "localhost"].includes(url.hostname), (route) => route.abort());

  await page.goto(uiUrl, { timeout: STEP_MS });
  const form = page.locator(".v-dialog--active");
  await form.waitFor({ timeout: STEP_MS });
  await form.getByLabel("Server URL").fill(serverUrl);
  await form.getByLabel("Username").fill(user);
  await form.getByLabel("Password").fill(password);
  await shoot("admin-ui-login.png");
  await form.getByRole("button", { name: /connect/i }).click();
  await page.locator(".v-dialog--active").waitFor({ state: "detached", timeout: STEP_MS });
  await page.getByText("connected", { exact: true }).first().waitFor({ timeout: STEP_MS });
  log("logged in");

  // The dashboard: clients, servers and namespaces, and the histograms fed by aggregatedEvents.
  await alice.timeout(STEP_MS).emitWithAck("hello", "after the admin logged in");
  await page.goto(uiUrl + "#/servers/", { timeout: STEP_MS });
  await page.getByText("geventsio-test").first().waitFor({ timeout: STEP_MS });
  log("the Servers page lists the server");
  await page.goto(uiUrl + "#/", { timeout: STEP_MS });
  // The two histograms appear once server_stats brought aggregated events.
  await page.locator("canvas").nth(3).waitFor({ timeout: STEP_MS });
  await shoot("admin-ui-dashboard.png");

  await page.goto(uiUrl + "#/sockets/", { timeout: STEP_MS });
  for (const socket of [alice, bob]) {
    await page.getByText(socket.id).first().waitFor({ timeout: STEP_MS });
  }
  log("the Sockets page lists both clients");
  await shoot("admin-ui-sockets.png");

  // An action from the web app: the socket's page joins alice to a room.
  await page.goto(`${uiUrl}#/n/${encodeURIComponent("/")}/sockets/${alice.id}`, { timeout: STEP_MS });
  const roomBox = page.getByLabel("Join a room");
  await roomBox.fill("vip");
  await page.locator("form").filter({ has: roomBox }).locator('button[type="submit"]').click();
  await page.getByRole("cell", { name: "vip", exact: true }).waitFor({ timeout: STEP_MS });
  const rooms = await alice.timeout(STEP_MS).emitWithAck("rooms");
  if (!rooms.includes("vip")) throw new Error(`alice's rooms after the UI's join: ${JSON.stringify(rooms)}`);
  log("the socket's page joined alice to the room vip");
  await shoot("admin-ui-socket.png");

  await page.goto(uiUrl + "#/events/", { timeout: STEP_MS });
  await page.getByText("hello").first().waitFor({ timeout: STEP_MS });
  log("the Events page shows the client's event");
  await shoot("admin-ui-events.png");

  await browser.close();
  for (const socket of clients) socket.close();
  clearTimeout(watchdog);
  console.log("DONE");
  process.exit(0);
}

main().catch(fail);
