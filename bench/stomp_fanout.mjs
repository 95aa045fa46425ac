// STOMP-over-WebSocket fan-out load client: N subscribers on one destination, K messages.
// Raw `ws` sockets and a minimal frame scanner (no stompjs): the client must not be the
// bottleneck. Usage: node bench/stomp_fanout.mjs '<json config>'
//   {url, login, passcode, destination, n, k, publish, timeoutMs, pad}
// publish=true: this process also publishes the K messages (SEND over one more socket), as
// RabbitMQ Web-STOMP needs; otherwise the server under test publishes after "ready".
// Each body carries "t" (publisher wall clock, ms); latency = receive time - t.
// stdout: {"ev":"ready"} once every subscription is receipted, then one result line.
import { createRequire } from "node:module";

const require = createRequire(new URL("../tests/node/package.json", import.meta.url));
const WebSocket = require("ws");

const cfg = JSON.parse(process.argv[2]);
const { url, login, passcode, destination, n, k } = cfg;
const timeoutMs = cfg.timeoutMs ?? 60000;
const total = n * k;
const emit = (o) => process.stdout.write(JSON.stringify(o) + "\n");

const frame = (command, headers, body = "") =>
  command + "\n" + Object.entries(headers).map(([a, b]) => `${a}:${b}`).join("\n") + "\n\n" + body + "\0";

let ready = 0;
let errors = 0;
// Report whatever arrived if the run never completes (e.g. the broker cancels subscriptions).
setTimeout(() => finish(), timeoutMs * 3);
let delivered = 0;
let firstT = null;
let lastRecv = 0;
const latencies = [];
const sockets = [];
const T_RE = /"t":(\d+(?:\.\d+)?)/;

function onData(ws, data) {
  const text = typeof data === "string" ? data : data.toString("utf8");
  if (text.startsWith("MESSAGE")) {
    const now = Date.now();
    const m = T_RE.exec(text);
    if (m) {
      const t = Number(m[1]);
      if (firstT === null || t < firstT) firstT = t;
      latencies.push(now - t);
    }
    delivered++;
    lastRecv = now;
    if (delivered === total) finish();
  } else if (text.startsWith("CONNECTED")) {
    ws.send(frame("SUBSCRIBE", { id: "0", destination, receipt: "r0" }));
  } else if (text.startsWith("RECEIPT")) {
    ready++;
    if (ready === n) onReady();
  } else if (text.startsWith("ERROR")) {
    errors++;
    if (errors === 1) emit({ ev: "error", frame: text.slice(0, 300) });
  }
}

function open() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, ["v12.stomp"], { perMessageDeflate: false });
    ws.on("open", () => {
      ws.send(frame("CONNECT", { "accept-version": "1.2", "heart-beat": "0,0", host: "/", login, passcode }));
      resolve(ws);
    });
    ws.on("message", (data) => onData(ws, data));
    ws.on("error", reject);
  });
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

let finished = false;
function finish() {
  if (finished) return;
  finished = true;
  latencies.sort((a, b) => a - b);
  const seconds = firstT === null ? null : (lastRecv - firstT) / 1000;
  emit({
    ev: "result",
    errors,
    ready,
    n,
    k,
    expected: total,
    delivered,
    seconds,
    rate: seconds ? Math.round(delivered / seconds) : null,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
  });
  for (const ws of sockets) ws.terminate();
  process.exit(0);
}

async function publish() {
  const pub = await new Promise((resolve, reject) => {
    const ws = new WebSocket(url, ["v12.stomp"], { perMessageDeflate: false });
    ws.on("open", () => {
      ws.send(frame("CONNECT", { "accept-version": "1.2", "heart-beat": "0,0", host: "/", login, passcode }));
    });
    ws.on("message", (d) => {
      if (d.toString().startsWith("CONNECTED")) resolve(ws);
    });
    ws.on("error", reject);
  });
  const pad = "x".repeat(cfg.pad ?? 80);
  for (let i = 0; i < k; i++) {
    const body = JSON.stringify({ t: Date.now(), i, pad });
    pub.send(frame("SEND", { destination, "content-type": "application/json" }, body));
  }
}

function onReady() {
  emit({ ev: "ready" });
  setTimeout(finish, timeoutMs);
  if (cfg.publish) publish().catch((e) => emit({ ev: "error", error: String(e) }));
}

const BATCH = 250;
for (let i = 0; i < n; i += BATCH) {
  const batch = [];
  for (let j = i; j < Math.min(n, i + BATCH); j++) batch.push(open());
  sockets.push(...(await Promise.all(batch)));
}
