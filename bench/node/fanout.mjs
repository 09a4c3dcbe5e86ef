// Socket.IO fan-out clients for bench/socketio_fanout.py: one Node process holding
// --clients sockets of the real socket.io-client (each `forceNew`, WebSocket only,
// `auth: {token}`), every one subscribed to signals with `subscribe:signals`.
//
//   node fanout.mjs <config.json>
//   config: {url, tokens: [access tokens, shared round-robin], clients, connectBatch,
//            deflate: offer permessage-deflate (as browsers and socket.io-client do by
//            default), out: path of the receipts file}
//
// Talks to the orchestrator with one JSON object per line on stdout:
//   {"event":"connected", ...}  every socket connected (or failed), with the timings
//   {"event":"ready","at":ms}   every socket's subscribe:signals acknowledged
//   {"event":"signal","id","timestamp","first":ms}  the first receipt of a signal id
//   {"event":"done"}            after "stop" on stdin: receipts written to `out`
// Receipt times are Date.now() (the same wall clock the signal's `timestamp` is on).
import { readFileSync, writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const say = (object) => process.stdout.write(`${JSON.stringify(object)}\n`);

const sockets = [];
// Per signal id: its timestamp and, per client, the receipt times (an array, so a
// doubled delivery shows as two).
const signals = new Map();
const counters = { connectErrors: 0, disconnects: 0, errors: 0, marketUpdates: 0 };
const disconnectReasons = {};

function onSignal(client, event) {
  const at = Date.now();
  let entry = signals.get(event.id);
  if (entry === undefined) {
    entry = { timestamp: event.timestamp, receipts: new Map() };
    signals.set(event.id, entry);
    say({ event: "signal", id: event.id, timestamp: event.timestamp, first: at });
  }
  const mine = entry.receipts.get(client);
  if (mine === undefined) entry.receipts.set(client, [at]);
  else mine.push(at);
}

function open(client) {
  const token = config.tokens[client % config.tokens.length];
  return new Promise((resolve) => {
    const socket = io(config.url, {
      forceNew: true,
      transports: ["websocket"],
      auth: { token },
      reconnection: false,
      timeout: 30000,
      ...(config.deflate ? {} : { perMessageDeflate: false }),
    });
    sockets[client] = socket;
    socket.on("trading:signal", (event) => onSignal(client, event));
    socket.on("market:update", () => {
      counters.marketUpdates += 1;
    });
    socket.on("error", () => {
      counters.errors += 1;
    });
    socket.on("disconnect", (reason) => {
      counters.disconnects += 1;
      disconnectReasons[reason] = (disconnectReasons[reason] ?? 0) + 1;
    });
    socket.once("connect", () => resolve(true));
    socket.once("connect_error", (err) => {
      counters.connectErrors += 1;
      if (counters.connectErrors <= 3) say({ event: "connect_error", message: err.message });
      resolve(false);
    });
  });
}

// "stop" on stdin, or stdin closing (the orchestrator gone): write what was received
// (once subscribed) and exit.
let subscribed = null;
const stopped = new Promise((resolve) => {
  const lines = createInterface({ input: process.stdin });
  lines.on("line", (line) => {
    if (line.trim() === "stop") resolve();
  });
  lines.on("close", resolve);
});
stopped.then(() => {
  if (subscribed === null) process.exit(1);
});

async function main() {
  const started = Date.now();
  let connected = 0;
  for (let first = 0; first < config.clients; first += config.connectBatch) {
    const batch = [];
    for (let c = first; c < Math.min(config.clients, first + config.connectBatch); c++) {
      batch.push(open(c));
    }
    connected += (await Promise.all(batch)).filter(Boolean).length;
  }
  const extensions = sockets.find((s) => s.connected)?.io.engine.transport.ws?._extensions;
  say({
    event: "connected",
    connected,
    failed: config.clients - connected,
    ms: Date.now() - started,
    deflate: Boolean(extensions?.["permessage-deflate"]),
  });

  const subscribing = Date.now();
  const acks = await Promise.all(
    sockets.map((socket) =>
      socket.connected
        ? socket
            .timeout(30000)
            .emitWithAck("subscribe:signals", {})
            .then((ack) => ack?.subscribed === "signals")
            .catch(() => false)
        : Promise.resolve(false),
    ),
  );
  subscribed = acks.filter(Boolean).length;
  say({ event: "ready", at: Date.now(), subscribed, ms: Date.now() - subscribing });

  await stopped;
  const receipts = {};
  for (const [id, entry] of signals) {
    receipts[id] = { timestamp: entry.timestamp, clients: Object.fromEntries(entry.receipts) };
  }
  writeFileSync(
    config.out,
    JSON.stringify({ clients: config.clients, subscribed, counters, disconnectReasons, receipts }),
  );
  for (const socket of sockets) socket?.disconnect();
  say({ event: "done" });
  process.exit(0);
}

main().catch((error) => {
  say({ event: "failed", message: String(error?.stack ?? error) });
  process.exit(1);
});
