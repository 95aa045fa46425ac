// Fan-out load generator (Node `ws`, Pusher protocol): N subscribers on one channel, K events
// published at RATE/s, delivered/s and trigger-to-client latency (p50/p99, ms).
//   node loadgen.mjs '{"url":"ws://127.0.0.1:6001/app/KEY?protocol=7","n":1000,"k":200,
//                      "rate":500,"channel":"private-o-X","secret":"..","key":"..",
//                      "trigger":"http"|"ws","httpBase":"http://127.0.0.1:8080","appId":".."}'
import crypto from 'node:crypto';
import WebSocket from 'ws';

const cfg = JSON.parse(process.argv[2]);
const N = cfg.n, K = cfg.k, RATE = cfg.rate || 500;
const hist = [];
let delivered = 0, connected = 0, subscribed = 0, firstAt = 0, lastAt = 0;
const socks = [];

function sign(socketId) {
  const h = crypto.createHmac('sha256', cfg.secret).update(`${socketId}:${cfg.channel}`).digest('hex');
  return `${cfg.key}:${h}`;
}

function open() {
  return new Promise((resolve) => {
    const ws = new WebSocket(cfg.url, { perMessageDeflate: false });
    socks.push(ws);
    ws.on('message', (buf) => {
      const s = buf.toString();
      if (s.includes('"bench"')) {
        const now = Date.now();
        const i = s.indexOf('\\"t\\":');
        const t = parseFloat(s.slice(i + 6));
        hist.push(now - t);
        delivered++;
        if (!firstAt) firstAt = now;
        lastAt = now;
        return;
      }
      const m = JSON.parse(s);
      if (m.event === 'pusher:connection_established') {
        connected++;
        const sid = JSON.parse(m.data).socket_id;
        const data = { channel: cfg.channel };
        if (cfg.channel.startsWith('private-')) data.auth = sign(sid);
        ws.send(JSON.stringify({ event: 'pusher:subscribe', data }));
      } else if (m.event === 'pusher_internal:subscription_succeeded') {
        subscribed++;
        resolve(ws);
      }
    });
    ws.on('error', (e) => { console.error('ws error', e.message); resolve(null); });
  });
}

function signedQuery(method, path, body) {
  const md5 = crypto.createHash('md5').update(body).digest('hex');
  const params = { auth_key: cfg.key, auth_timestamp: String(Math.floor(Date.now() / 1000)),
    auth_version: '1.0', body_md5: md5 };
  const q = Object.keys(params).sort().map((k) => `${k}=${params[k]}`).join('&');
  const sig = crypto.createHmac('sha256', cfg.secret).update(`${method}\n${path}\n${q}`).digest('hex');
  return `${q}&auth_signature=${sig}`;
}

async function main() {
  const batch = 200;
  for (let i = 0; i < N; i += batch) {
    await Promise.all(Array.from({ length: Math.min(batch, N - i) }, open));
  }
  let pub = null;
  if (cfg.trigger === 'ws') pub = await open();
  const rss0 = cfg.serverPid ? rssOf(cfg.serverPid) : null;
  const path = `/apps/${cfg.appId}/events`;
  const start = Date.now();
  const interval = 1000 / RATE;
  for (let i = 0; i < K; i++) {
    const due = start + i * interval;
    const wait = due - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const data = JSON.stringify({ bench: true, i, t: Date.now(), pad: 'x'.repeat(60) });
    if (cfg.trigger === 'http') {
      const body = JSON.stringify({ name: 'bench', channel: cfg.channel, data });
      fetch(`${cfg.httpBase}${path}?${signedQuery('POST', path, body)}`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body,
      }).catch((e) => console.error('trigger', e.message));
    } else {
      pub.send(JSON.stringify({ event: 'bench', channel: cfg.channel, data }));
    }
  }
  const expected = N * K;
  const deadline = Date.now() + 60000;
  while (delivered < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  hist.sort((a, b) => a - b);
  const pct = (p) => hist.length ? hist[Math.min(hist.length - 1, Math.floor(p * hist.length))] : null;
  const secs = (lastAt - firstAt) / 1000 || 1;
  process.stdout.write(JSON.stringify({
    n: N, k: K, rate: RATE, connected, subscribed, delivered, expected,
    delivered_per_s: Math.round(delivered / secs), p50_ms: pct(0.5), p99_ms: pct(0.99),
    server_rss_idle_kb: rss0,
  }) + '\n');
  for (const s of socks) s && s.terminate();
  process.exit(0);
}

import fs from 'node:fs';
function rssOf(pid) {
  const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/);
  return m ? Number(m[1]) : null;
}
main();
