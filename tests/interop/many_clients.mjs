// What the scripts driving many socket.io-client 4.x clients share (cluster_clients.mjs,
// proxy_clients.mjs): one JSON report line, and the connect / join / echo round.

/**
 * The script's end: disconnect every socket, print the report as ONE JSON line and
 * exit (status 1 unless report.ok). Called with {ok: false} after timeoutMs by itself.
 */
export function reporter(sockets, timeoutMs) {
  const timer = setTimeout(() => finish({ ok: false, error: `timed out after ${timeoutMs} ms` }),
    timeoutMs);
  function finish(report) {
    clearTimeout(timer);
    for (const s of sockets) s.disconnect();
    process.stdout.write(JSON.stringify(report) + "\n");
    process.exit(report.ok ? 0 : 1);
  }
  return finish;
}

/** Resolves when the socket connects; rejects with its connect_error. */
export function connected(s) {
  return new Promise((resolve, reject) => {
    s.once("connect", resolve);
    s.once("connect_error", (err) => reject(new Error(`connect_error: ${err.message}`)));
  });
}

/** Resolves when the socket's Engine.IO connection has moved to WebSocket. */
export function upgraded(s) {
  return new Promise((resolve) => s.io.engine.once("upgrade", resolve));
}

/** Every socket joins room "all", then gets 5 echoes acknowledged, one after the other. */
export async function joinAndEcho(sockets, ackMs) {
  for (const [i, s] of sockets.entries()) {
    if ((await s.timeout(ackMs).emitWithAck("join", "all")) !== true) throw new Error("join refused");
    for (let n = 0; n < 5; n++) {
      const sent = { i, n, text: "é".repeat(n) };
      const back = await s.timeout(ackMs).emitWithAck("echo", sent);
      if (JSON.stringify(back) !== JSON.stringify(sent)) throw new Error(`wrong echo ${JSON.stringify(back)}`);
    }
  }
}
