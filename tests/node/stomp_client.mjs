// Drives an unmodified @stomp/stompjs 7.5.0 client for the Python tests.
// stdin: one JSON command per line; stdout: one JSON event per line.
//   {"op":"connect","url":..., "login":..., "passcode":..., "heartbeat":[incoming, outgoing]}
//   {"op":"subscribe","destination":..., "headers":{...}, "receipt":"r1"}
//   {"op":"unsubscribe","id":"sub-0"}
//   {"op":"deactivate"}
// Events: ready, connected, receipt, message, stomp_error, ws_close, pong, deactivated, fatal.
import { createInterface } from "node:readline";
import { Client } from "@stomp/stompjs";
import WebSocket from "ws";

const emit = (event) => process.stdout.write(JSON.stringify(event) + "\n");
let client = null;
const subscriptions = new Map();

function connect(cmd) {
  const [incoming, outgoing] = cmd.heartbeat ?? [0, 0];
  const connectHeaders = { login: cmd.login };
  if (cmd.passcode !== undefined) connectHeaders.passcode = cmd.passcode;
  client = new Client({
    // What a browser does: offer the STOMP subprotocols, best first.
    webSocketFactory: () => new WebSocket(cmd.url, ["v12.stomp", "v11.stomp", "v10.stomp"]),
    connectHeaders,
    heartbeatIncoming: incoming,
    heartbeatOutgoing: outgoing,
    reconnectDelay: 0, // the test decides when to reconnect
    debug: (line) => {
      if (line.startsWith("<<< PONG")) emit({ ev: "pong" });
    },
    onConnect: (frame) => {
      emit({ ev: "connected", headers: frame.headers, subprotocol: client.webSocket?.protocol ?? null });
    },
    onStompError: (frame) => emit({ ev: "stomp_error", headers: frame.headers, body: frame.body }),
    onWebSocketClose: (event) => emit({ ev: "ws_close", code: event.code }),
    onUnhandledMessage: (message) => emit({ ev: "unhandled", headers: message.headers }),
  });
  client.activate();
}

function subscribe(cmd) {
  const headers = { ...(cmd.headers ?? {}) };
  if (cmd.receipt) {
    headers.receipt = cmd.receipt;
    client.watchForReceipt(cmd.receipt, (frame) => emit({ ev: "receipt", id: frame.headers["receipt-id"] }));
  }
  const sub = client.subscribe(
    cmd.destination,
    (message) => emit({ ev: "message", headers: message.headers, body: message.body }),
    headers,
  );
  subscriptions.set(sub.id, sub);
  emit({ ev: "subscribed", id: sub.id });
}

const rl = createInterface({ input: process.stdin });
rl.on("line", async (line) => {
  try {
    const cmd = JSON.parse(line);
    if (cmd.op === "connect") connect(cmd);
    else if (cmd.op === "subscribe") subscribe(cmd);
    else if (cmd.op === "unsubscribe") subscriptions.get(cmd.id)?.unsubscribe();
    else if (cmd.op === "deactivate") {
      // Sends DISCONNECT with a receipt and closes the socket only when the RECEIPT arrives.
      await client.deactivate();
      emit({ ev: "deactivated" });
    } else if (cmd.op === "exit") process.exit(0);
  } catch (error) {
    emit({ ev: "fatal", error: String(error?.stack ?? error) });
  }
});
emit({ ev: "ready" });
