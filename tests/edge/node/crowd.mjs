// A crowd of socket.io-client sockets that stay subscribed to signals through
// failures, as the dashboard does: each reconnects by itself and, on every connect,
// emits subscribe:signals with the id of the last signal it received, so the edge sends
// what it missed first. tests/replicas/test_stream_failover.py runs it.
//
//   node crowd.mjs '{"url": ..., "token": ..., "clients": 200}'
//
// Prints JSON lines: {"event":"subscribed","client":n} at each (re)subscription, and
// after a "report" line on stdin {"event":"report","clients":[{ids, connects, errors}]};
// "stop" on stdin closes every socket and exits.
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const config = JSON.parse(process.argv[2]);
const say = (object) => process.stdout.write(`${JSON.stringify(object)}\n`);
const clients = [];

for (let n = 0; n < config.clients; n += 1) {
  const state = { ids: [], connects: 0, errors: [] };
  const socket = io(config.url, {
    forceNew: true,
    transports: ["websocket"],
    auth: { token: config.token },
    reconnectionDelay: 200,
    reconnectionDelayMax: 1000,
    perMessageDeflate: false,
  });
  socket.on("connect", () => {
    state.connects += 1;
    const last = state.ids.length ? state.ids[state.ids.length - 1] : undefined;
    socket.emit("subscribe:signals", last ? { lastSignalId: last } : {}, () =>
      say({ event: "subscribed", client: n, connects: state.connects }),
    );
  });
  socket.on("trading:signal", (event) => state.ids.push(event.id));
  socket.on("error", (error) => state.errors.push(error));
  clients.push({ socket, state });
}

createInterface({ input: process.stdin }).on("line", (line) => {
  if (line === "report") {
    say({ event: "report", clients: clients.map((c) => c.state) });
  } else if (line === "stop") {
    for (const { socket } of clients) socket.close();
    process.exit(0);
  }
});
