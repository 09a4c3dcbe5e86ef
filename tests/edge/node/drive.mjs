// Drives socket.io-client (the npm package, as a browser app would use it) through a
// JSON plan and prints what happens as JSON lines; tests/edge/test_node_client.py runs it.
//
//   node drive.mjs '{"url": ..., "timeoutMs": ..., "clients": {...}, "steps": [...]}'
//
// clients: name -> {token (omitted: no auth), transports (default ["websocket"])}.
// steps, in order, each waiting for what it names (never a fixed sleep):
//   {op: "connect", client, token?}       connect (again); until connect or connect_error
//   {op: "emit", client, event, args?, ack?}  emit; with ack, until the acknowledgement
//   {op: "wait", client, event, count?, contains?}
//        until `count` (default 1) events of that name arrived since the socket was made,
//        counting only those whose payload contains `contains` (see `matches`)
//   {op: "disconnected", client}          until the server has closed the socket
//   {op: "disconnect", client}            close it from this side
//   {op: "checkpoint", name}              print it, then until a line on stdin (the test
//                                         acts in between: publishes, mints a token, ...)
//   {op: "until", epochMs}                until that moment (token expiry tests)
//   {op: "state", client}                 print whether it is connected
// A string argument "$last:<client>:<event>" is the id of the last such event received.
// Printed, each with `at` (epoch ms): connect, connect_error, disconnect, event, ack,
// checkpoint, state, then done (exit status 0); or, after timeoutMs, timeout with the
// step it was on (status 2); or failed with the error (status 1).

import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const plan = JSON.parse(process.argv[2]);
const sockets = {};
const received = {}; // client -> [{event, data}]
let checks = []; // pending conditions, re-evaluated whenever something arrives
let current = null;

function print(record) {
  process.stdout.write(`${JSON.stringify({ at: Date.now(), ...record })}\n`);
}

function changed() {
  checks = checks.filter((check) => !check());
}

function until(condition) {
  return new Promise((resolve) => {
    const check = () => (condition() ? (resolve(), true) : false);
    if (!check()) checks.push(check);
  });
}

const stdinLines = [];
createInterface({ input: process.stdin }).on("line", (line) => {
  stdinLines.push(line);
  changed();
});

// `expected` is a partial payload: every key it names must match, an array matches when
// each of its elements matches some element of the actual array.
function matches(actual, expected) {
  if (Array.isArray(expected)) {
    return Array.isArray(actual) && expected.every((e) => actual.some((a) => matches(a, e)));
  }
  if (expected !== null && typeof expected === "object") {
    return (
      actual !== null &&
      typeof actual === "object" &&
      Object.entries(expected).every(([key, value]) => matches(actual[key], value))
    );
  }
  return actual === expected;
}

function resolveArg(value) {
  if (typeof value === "string" && value.startsWith("$last:")) {
    const rest = value.slice("$last:".length);
    const [client, event] = [rest.slice(0, rest.indexOf(":")), rest.slice(rest.indexOf(":") + 1)];
    const seen = (received[client] ?? []).filter((e) => e.event === event);
    return seen.length ? seen[seen.length - 1].data.id : null;
  }
  if (Array.isArray(value)) return value.map(resolveArg);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, resolveArg(v)]));
  }
  return value;
}

function socketOf(name, token) {
  if (sockets[name]) {
    if (token !== undefined) sockets[name].auth = { token };
    return sockets[name];
  }
  const config = plan.clients[name] ?? {};
  const auth = token ?? config.token;
  const socket = io(plan.url, {
    path: "/socket.io/",
    auth: auth == null ? undefined : { token: auth },
    transports: config.transports ?? ["websocket"],
    reconnection: false,
    forceNew: true,
    autoConnect: false,
  });
  received[name] = [];
  socket.outcomes = 0; // connects and connect_errors so far
  socket.on("connect", () => {
    socket.outcomes += 1;
    print({ type: "connect", client: name, transport: socket.io.engine.transport.name });
    changed();
  });
  socket.on("connect_error", (err) => {
    socket.outcomes += 1;
    print({ type: "connect_error", client: name, message: err.message, data: err.data ?? null });
    changed();
  });
  socket.on("disconnect", (reason) => {
    print({ type: "disconnect", client: name, reason });
    changed();
  });
  socket.onAny((event, ...args) => {
    const data = args.length ? args[0] : null;
    received[name].push({ event, data });
    print({ type: "event", client: name, event, data });
    changed();
  });
  sockets[name] = socket;
  return socket;
}

const ops = {
  async connect({ client, token }) {
    const socket = socketOf(client, token);
    const before = socket.outcomes;
    socket.connect();
    await until(() => socket.outcomes > before);
  },
  async emit({ client, event, args = [], ack = false }) {
    const socket = sockets[client];
    const values = resolveArg(args);
    if (!ack) {
      socket.emit(event, ...values);
      return;
    }
    const reply = await socket.timeout(plan.timeoutMs).emitWithAck(event, ...values);
    print({ type: "ack", client, event, data: reply ?? null });
  },
  async wait({ client, event, count = 1, contains }) {
    const wanted = (e) => e.event === event && (contains === undefined || matches(e.data, contains));
    await until(() => received[client].filter(wanted).length >= count);
  },
  async disconnected({ client }) {
    await until(() => !sockets[client].connected);
  },
  async disconnect({ client }) {
    sockets[client].disconnect();
  },
  async checkpoint({ name }) {
    print({ type: "checkpoint", name });
    await until(() => stdinLines.length > 0);
    stdinLines.shift();
  },
  async until({ epochMs }) {
    const timer = setTimeout(changed, Math.max(0, epochMs - Date.now()));
    await until(() => Date.now() >= epochMs);
    clearTimeout(timer);
  },
  async state({ client }) {
    print({ type: "state", client, connected: sockets[client].connected });
  },
};

function finish(status) {
  for (const socket of Object.values(sockets)) {
    socket.removeAllListeners();
    socket.offAny();
    socket.disconnect();
  }
  process.stdout.write("", () => process.exit(status));
}

setTimeout(() => {
  print({ type: "timeout", step: current });
  finish(2);
}, plan.timeoutMs);

try {
  for (const [index, step] of plan.steps.entries()) {
    current = { index, ...step };
    await ops[step.op](step);
  }
  print({ type: "done" });
  finish(0);
} catch (error) {
  print({ type: "failed", step: current, error: String(error?.stack ?? error) });
  finish(1);
}
