// Cluster fan-out load generator (Node `ws`; one process, one clock).
//   node loadgen.mjs '{"wsUrl","probeUrl","key","appId","secret","httpHost","httpPort",
//                      "n","k","rate","concurrency","channel"}'
// Opens N Pusher-protocol subscribers on a public channel through wsUrl (nginx), and one
// probe socket straight to the trigger node (probeUrl) to learn that node's socket-id prefix:
// a subscriber whose socket id shares it is on the trigger node ("same"), else "other".
// Phases on the same sockets:
//   peak:  K events, signed Pusher HTTP API triggers to the trigger node, `concurrency` in
//          flight -> delivered/s (first send to last delivery)
//   paced: K events at `rate` events/s -> latency (receive - send, performance.now() in this
//          process) p50/p99 for same-node and other-node subscribers
// Every delivery is matched by the event index in its data; lost = expected - delivered.
// stdout: one JSON line {"ev":"result",...}.
import crypto from 'node:crypto';
import http from 'node:http';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';

const require = createRequire(new URL('../../tests/node/package.json', import.meta.url));
const WebSocket = require('ws');

const cfg = JSON.parse(process.argv[2]);
const now = () => performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const agent = new http.Agent({ keepAlive: true, maxSockets: cfg.concurrency || 8 });

function open(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const timer = setTimeout(() => reject(new Error('connect timeout ' + url)), 20000);
    ws.on('error', reject);
    ws.on('message', function first(raw) {
      const msg = JSON.parse(raw.toString());
      if (msg.event === 'pusher:connection_established') {
        ws.off('message', first);
        ws.socketId = JSON.parse(msg.data).socket_id;
        clearTimeout(timer);
        resolve(ws);
      }
    });
  });
}

function subscribe(ws, channel) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('subscribe timeout')), 20000);
    ws.on('message', function ok(raw) {
      const msg = JSON.parse(raw.toString());
      if (msg.event === 'pusher_internal:subscription_succeeded') {
        ws.off('message', ok);
        clearTimeout(timer);
        resolve();
      }
    });
    ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel } }));
  });
}

function trigger(index, phase) {
  const body = JSON.stringify({
    name: 'bench', channel: cfg.channel, data: JSON.stringify({ p: phase, i: index }),
  });
  const path = `/apps/${cfg.appId}/events`;
  const md5 = crypto.createHash('md5').update(body).digest('hex');
  const query = `auth_key=${cfg.key}&auth_timestamp=${Math.floor(Date.now() / 1000)}` +
    `&auth_version=1.0&body_md5=${md5}`;
  const sig = crypto.createHmac('sha256', cfg.secret).update(`POST\n${path}\n${query}`).digest('hex');
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: cfg.httpHost, port: cfg.httpPort, method: 'POST', agent,
      path: `${path}?${query}&auth_signature=${sig}`,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error('HTTP ' + res.statusCode))));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const probe = await open(cfg.probeUrl);
const home = probe.socketId.split('.')[0];
probe.close();
const socks = [];
for (let i = 0; i < cfg.n; i++) socks.push(await open(cfg.wsUrl));
await Promise.all(socks.map((ws) => subscribe(ws, cfg.channel)));
const same = socks.map((ws) => ws.socketId.split('.')[0] === home);

let phase = 0;
let sent = new Float64Array(cfg.k);
let lat = { same: [], other: [] };
let delivered = 0;
let lastAt = 0;
socks.forEach((ws, s) => {
  ws.on('message', (raw) => {
    const t = now();
    const msg = JSON.parse(raw.toString());
    if (msg.event !== 'bench') return;
    const d = JSON.parse(msg.data);
    if (d.p !== phase) return;
    delivered += 1;
    lastAt = t;
    (same[s] ? lat.same : lat.other).push(t - sent[d.i]);
  });
});

async function run(name, paced) {
  phase += 1;
  sent = new Float64Array(cfg.k);
  lat = { same: [], other: [] };
  delivered = 0;
  const expected = cfg.k * cfg.n;
  const start = now();
  let next = 0;
  const conc = paced ? 1 : cfg.concurrency || 8;
  const workers = Array.from({ length: conc }, async () => {
    while (next < cfg.k) {
      const i = next++;
      if (paced) {
        const due = start + (i * 1000) / cfg.rate;
        const wait = due - now();
        if (wait > 0) await sleep(wait);
      }
      sent[i] = now();
      await trigger(i, phase);
    }
  });
  await Promise.all(workers);
  const deadline = now() + 10000;
  while (delivered < expected && now() < deadline) await sleep(5);
  await sleep(200); // anything late or duplicated shows up here
  const pct = (xs, q) => {
    if (!xs.length) return null;
    const s = Float64Array.from(xs).sort();
    return +s[Math.min(s.length - 1, Math.floor(q * s.length))].toFixed(2);
  };
  return {
    phase: name,
    expected,
    delivered,
    lost: Math.max(0, expected - delivered),
    duplicated: Math.max(0, delivered - expected),
    delivered_per_s: +(delivered / ((lastAt - start) / 1000)).toFixed(0),
    same: { n: lat.same.length, p50: pct(lat.same, 0.5), p99: pct(lat.same, 0.99) },
    other: { n: lat.other.length, p50: pct(lat.other, 0.5), p99: pct(lat.other, 0.99) },
  };
}

const peak = await run('peak', false);
const paced = await run('paced', true);
emit({
  ev: 'result', n: cfg.n, k: cfg.k, rate: cfg.rate,
  subscribers_same: same.filter(Boolean).length, subscribers_other: same.filter((x) => !x).length,
  peak, paced,
});
for (const ws of socks) ws.terminate();
process.exit(0);
