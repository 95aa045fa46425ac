// Drives an unmodified doshii-partner-node-sdk 7.0.2 for the Python tests.
// stdin: one JSON command per line; stdout: one JSON event per line.
//   {"op":"init","clientId":...,"clientSecret":...,"apiUrl":...,"wsUrl":...,"pingInterval":ms}
//   {"op":"call","id":"c1","method":"order.createOrder","args":[...]}  ({"$date": ms} → Date)
//   {"op":"listen","events":["pong","order_updated",...]}   (subscribeToWebsockeEvents)
//   {"op":"close"}
// Events: ready, result {id, value}, error {id, status, data, message}, ws {event, data},
// ws_open, ws_close {code, reason}, fatal.
import { createInterface } from "node:readline";
import sdk from "doshii-partner-node-sdk";

const Doshii = sdk.default; // a CommonJS module: its class is exports.default

const emit = (event) => process.stdout.write(JSON.stringify(event) + "\n");
let doshii = null;

const revive = (value) => {
  if (Array.isArray(value)) return value.map(revive);
  if (value && typeof value === "object") {
    if (Object.keys(value).length === 1 && "$date" in value) return new Date(value.$date);
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, revive(v)]));
  }
  return value;
};

async function call(cmd) {
  const [group, name] = cmd.method.split(".");
  const target = name ? doshii[group] : doshii;
  const fn = target[name ?? group];
  try {
    const value = await fn.apply(target, revive(cmd.args ?? []));
    emit({ ev: "result", id: cmd.id, value: value ?? null });
  } catch (err) {
    emit({
      ev: "error",
      id: cmd.id,
      status: err.response?.status ?? null,
      data: err.response?.data ?? null,
      message: String(err.message ?? err),
    });
  }
}

function listen(cmd) {
  doshii.subscribeToWebsockeEvents(cmd.events, (event, data) => emit({ ev: "ws", event, data }));
  const socket = doshii.websocket;
  socket.on("open", () => emit({ ev: "ws_open" }));
  socket.on("close", (code, reason) => emit({ ev: "ws_close", code, reason: reason.toString() }));
}

const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (err) {
    emit({ ev: "fatal", message: `bad command: ${err}` });
    return;
  }
  try {
    if (cmd.op === "init") {
      doshii = new Doshii(cmd.clientId, cmd.clientSecret, {
        apiUrlOverride: cmd.apiUrl,
        websocketUrlOverride: cmd.wsUrl,
        pingInterval: cmd.pingInterval,
      });
      emit({ ev: "ready" });
    } else if (cmd.op === "call") {
      call(cmd);
    } else if (cmd.op === "listen") {
      listen(cmd);
    } else if (cmd.op === "close") {
      doshii?.websocket?.close();
      process.exit(0);
    }
  } catch (err) {
    emit({ ev: "fatal", message: String(err.stack ?? err) });
  }
});
rl.on("close", () => process.exit(0));
