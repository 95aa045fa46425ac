// Fan-out load generator (Node `ws`; one process, one clock). Opens N subscribers, then runs
// two phases on the same connections:
//   peak: K events triggered as fast as the trigger path takes them -> delivered/s
//   half: K events paced at (peak delivered/s / 2 / N) events/s    -> p50/p99 latency
// Latency = receive time - trigger send time, both performance.now() in this process.
// Every wait is bounded; a peer that stalls is reported ("hung"), never waited for.
//   node loadgen.mjs '<json config>'   (see bench/fanout/run.py for the fields)
// stdout: one JSON line per event ({"ev":"connected"...}, {"ev":"phase"...}, {"ev":"result"...}).
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import inspector from 'node:inspector';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';

const require = createRequire(new URL('../../tests/node/package.json', import.meta.url));
const WebSocket = require('ws');

const cfg = JSON.parse(process.argv[2]);
const N = cfg.n;
const K = cfg.k;
const PROTO = cfg.proto; // pusher | stomp | sio
const TRIGGER = cfg.trigger; // ws | sio | stomp | pusher-api | rest
const CONC = cfg.concurrency || 8; // HTTP triggers in flight
const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const now = () => performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// Every delivered message carries the marker OCB{phase}_{index}x (in the order's note on the
// REST paths); STOMP frames without it are matched by their `seq` header.
const MARK = Buffer.from('OCB');
const SEQ = Buffer.from('\nseq:');
let markPhase = 0;

// The decimal number at buf[i..] (-1 if none); digitsEnd = the index after it.
let digitsEnd = 0;
function digits(buf, i) {
  let v = 0;
  let c;
  const start = i;
  while (i < buf.length && (c = buf[i]) >= 48 && c <= 57) { v = v * 10 + c - 48; i++; }
  digitsEnd = i;
  return i > start ? v : -1;
}

// The index of the marker in a raw frame (no decoding; Buffer.indexOf is native), its phase
// in markPhase; -1 if there is none.
function markIn(buf) {
  for (let at = buf.indexOf(MARK); at !== -1; at = buf.indexOf(MARK, at + 1)) {
    const phaseNo = digits(buf, at + 3);
    if (phaseNo < 0 || buf[digitsEnd] !== 95 /* _ */) continue;
    const id = digits(buf, digitsEnd + 1);
    if (id < 0 || buf[digitsEnd] !== 120 /* x */) continue;
    markPhase = phaseNo;
    return id;
  }
  return -1;
}

// A STOMP frame's `seq` header (headers end at the first blank line), or -1.
function seqIn(buf) {
  const at = buf.indexOf(SEQ);
  if (at === -1 || at > buf.indexOf('\n\n')) return -1;
  const seq = digits(buf, at + 5);
  return buf[digitsEnd] === 10 ? seq : -1;
}

// -- bookkeeping -------------------------------------------------------------------------------
// recv: [id, t] pairs in a Float64Array preallocated for the expected deliveries (a growing JS
// array cost the load generator GC time per message); `extra` takes any beyond that.
let phase = null; // {no, name, sent: Float64Array, recv, nrecv, extra: [], delivered, seqToId: Map}
let phaseNo = 0;
let connected = 0;
let subscribed = 0;
let errors = 0;
let closedEarly = 0;
let firstError = null;
const socks = [];

function deliver(id, t, no, bytes) {
  if (!phase || (no !== undefined && no !== phase.no)) return; // late arrival from another phase
  phase.delivered++;
  phase.frames++;
  phase.bytes += bytes;
  if (phase.nrecv + 2 <= phase.recv.length) {
    phase.recv[phase.nrecv++] = id;
    phase.recv[phase.nrecv++] = t;
  } else {
    phase.extra.push(id, t);
  }
  if (!phase.firstRecv) phase.firstRecv = t;
  phase.lastRecv = t;
}

function noteError(msg) {
  errors++;
  if (!firstError) firstError = String(msg).slice(0, 300);
}

// [user, system] CPU seconds of a process so far, from /proc/PID/stat (clock ticks: 100/s).
function cpuSeconds(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return [Number(f[11]) / 100, Number(f[12]) / 100]; // fields 14 and 15: utime, stime
  } catch {
    return null;
  }
}

function rssKb(pid) {
  try {
    const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

// -- HTTP helpers ------------------------------------------------------------------------------
function signedQuery(method, path, body) {
  const md5 = crypto.createHash('md5').update(body).digest('hex');
  const params = { auth_key: cfg.key, auth_timestamp: String(Math.floor(Date.now() / 1000)),
    auth_version: '1.0', body_md5: md5 };
  const q = Object.keys(params).sort().map((k) => `${k}=${params[k]}`).join('&');
  const sig = crypto.createHmac('sha256', cfg.secret).update(`${method}\n${path}\n${q}`).digest('hex');
  return `${q}&auth_signature=${sig}`;
}

// node:http with a keep-alive agent, not fetch(): undici's fetch cost the load generator
// ~1 ms of CPU per request, which made it the bottleneck of every HTTP-triggered run at
// N = 100 (the client at 1.0-1.15 cores while the server had room).
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
function post(url, body, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: 'POST', agent, timeout: 30000,
      headers: { ...headers, 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        if (res.statusCode >= 200 && res.statusCode < 300) resolve(text);
        else reject(new Error(`${res.statusCode} ${text.slice(0, 200)}`));
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout after 30 s')));
    req.on('error', reject);
    req.end(body);
  });
}

async function channelAuth(socketId) {
  if (!cfg.authUrl) {
    const h = crypto.createHmac('sha256', cfg.secret).update(`${socketId}:${cfg.channel}`).digest('hex');
    return `${cfg.key}:${h}`;
  }
  const body = new URLSearchParams({ ...cfg.authParams, socket_id: socketId, channel_name: cfg.channel });
  const text = await post(cfg.authUrl, body.toString(), { 'content-type': 'application/x-www-form-urlencoded' });
  return JSON.parse(text).auth;
}

// -- subscribers -------------------------------------------------------------------------------
const stompFrame = (command, headers, body = '') =>
  command + '\n' + Object.entries(headers).map(([a, b]) => `${a}:${b}`).join('\n') + '\n\n' + body + '\0';

function open(isPublisher = false) {
  return new Promise((resolve) => {
    let done = false;
    const finish = (v) => { if (!done) { done = true; resolve(v); } };
    const protocols = PROTO === 'stomp' ? ['v12.stomp'] : [];
    const ws = new WebSocket(cfg.url, protocols, {
      perMessageDeflate: false, handshakeTimeout: 30000,
      // The fast path reads raw bytes and decodes only handshake frames, which JSON.parse
      // or a prefix check would reject if malformed: UTF-8 validation per message is waste.
      skipUTF8Validation: true,
    });
    socks.push(ws);
    ws.on('open', () => {
      connected++;
      if (PROTO === 'stomp') {
        ws.send(stompFrame('CONNECT', { 'accept-version': '1.2', 'heart-beat': '0,0', host: '/',
          login: cfg.login, passcode: cfg.passcode ?? '' }));
      }
    });
    ws.on('message', (buf) => {
      const t = now();
      // Fast path, the same for every protocol: find the marker in the raw bytes (a STOMP
      // MESSAGE by the seq header), never decoding or parsing the frame.
      if (PROTO !== 'stomp' || buf[0] === 0x4d /* M */) {
        const id = markIn(buf);
        if (id >= 0) return deliver(id, t, markPhase, buf.length);
        if (PROTO === 'stomp') {
          const seq = seqIn(buf);
          if (seq > (cfg.baseSeq || 0)) return deliver(-seq, t, undefined, buf.length);
          return undefined;
        }
      }
      const s = buf.toString();
      if (PROTO === 'pusher') {
        const msg = JSON.parse(s);
        if (msg.event === 'pusher:connection_established') {
          const sid = JSON.parse(msg.data).socket_id;
          const data = { channel: cfg.channel };
          (cfg.channel.startsWith('private-') ? channelAuth(sid) : Promise.resolve(null))
            .then((auth) => {
              if (auth) data.auth = auth;
              ws.send(JSON.stringify({ event: 'pusher:subscribe', data }));
            })
            .catch((e) => { noteError(`auth: ${e.message}`); finish(null); });
        } else if (msg.event === 'pusher_internal:subscription_succeeded') {
          subscribed++;
          finish(ws);
        } else if (msg.event === 'pusher:subscription_error' || msg.event === 'pusher:error') {
          noteError(s);
          finish(null);
        }
      } else if (PROTO === 'stomp') {
        if (s.startsWith('CONNECTED')) {
          if (isPublisher) return finish(ws);
          ws.send(stompFrame('SUBSCRIBE', { id: '0', destination: cfg.destination, receipt: 'r0' }));
        } else if (s.startsWith('RECEIPT')) {
          subscribed++;
          finish(ws);
        } else if (s.startsWith('ERROR')) {
          noteError(s);
          finish(null);
        }
      } else if (PROTO === 'sio') {
        if (s.startsWith('42')) {
          if (s.startsWith('42["joined"')) { subscribed++; finish(ws); }
        } else if (s === '2') {
          ws.send('3');
        } else if (s.startsWith('0{')) {
          ws.send('40');
        } else if (s.startsWith('40')) {
          if (isPublisher) return finish(ws);
          ws.send(`42${JSON.stringify(['join', cfg.channel])}`);
        }
      }
      return undefined;
    });
    ws.on('error', (e) => { noteError(`ws: ${e.message}`); finish(null); });
    ws.on('close', () => { if (!finishedAll) closedEarly++; finish(null); });
  });
}
let finishedAll = false;

// -- triggers ----------------------------------------------------------------------------------
let publisher = null;
const PAD = 'x'.repeat(cfg.pad ?? 60);

async function trigger(i) {
  const mark = `OCB${phase.no}_${i}x`;
  if (TRIGGER === 'ws') {
    const data = JSON.stringify({ m: mark, i, pad: PAD });
    publisher.send(JSON.stringify({ event: 'oc-bench', channel: cfg.channel, data }));
  } else if (TRIGGER === 'sio') {
    publisher.send(`42${JSON.stringify(['publish', cfg.channel, JSON.stringify({ m: mark, i, pad: PAD })])}`);
  } else if (TRIGGER === 'stomp') {
    publisher.send(stompFrame('SEND', { destination: cfg.destination, 'content-type': 'application/json' },
      JSON.stringify({ m: mark, i, pad: PAD })));
  } else if (TRIGGER === 'pusher-api') {
    const path = `/apps/${cfg.appId}/events`;
    const data = JSON.stringify({ m: mark, i, pad: PAD });
    const body = JSON.stringify({ name: 'oc-bench', channel: cfg.channel, data });
    await post(`${cfg.httpBase}${path}?${signedQuery('POST', path, body)}`, body,
      { 'content-type': 'application/json' });
  } else if (TRIGGER === 'rest') {
    const text = await post(`${cfg.httpBase}/v1/orders/${cfg.orderId}/notes`,
      JSON.stringify({ text: `${mark} ${PAD}` }),
      { 'content-type': 'application/json', authorization: cfg.restAuth });
    for (const e of JSON.parse(text).events || []) phase.seqToId.set(e.seq, i);
  }
}

async function runPhase(name, k, rate, deadlineMs) {
  phase = { no: ++phaseNo, name, sent: new Float64Array(k), recv: new Float64Array(2 * N * k), nrecv: 0, extra: [], delivered: 0, seqToId: new Map(),
    firstRecv: 0, lastRecv: 0, triggerErrors: 0, frames: 0, bytes: 0 };
  const cpu0 = [cpuSeconds('self'), cpuSeconds(cfg.serverPid)];
  const expected = N * k;
  const t0 = now();
  const interval = rate > 0 ? 1000 / rate : 0;
  const inflight = new Set();
  for (let i = 0; i < k; i++) {
    if (interval) {
      const wait = t0 + i * interval - now();
      if (wait > 0) await sleep(wait);
    }
    if (now() - t0 > deadlineMs) break;
    phase.sent[i] = now();
    const p = Promise.resolve(trigger(i)).catch((e) => { phase.triggerErrors++; noteError(`trigger: ${e.message}`); });
    if (TRIGGER === 'pusher-api' || TRIGGER === 'rest') {
      inflight.add(p);
      p.finally(() => inflight.delete(p));
      if (inflight.size >= CONC) await Promise.race(inflight);
    } else if (!interval && i % 50 === 49) {
      await sleep(0); // let the publisher socket flush
    }
  }
  await Promise.all(inflight);
  const triggersDone = now();
  const end = t0 + deadlineMs;
  while (phase.delivered < expected && now() < end) await sleep(20);
  // resolve ids (STOMP rest: seq -> trigger index) and latencies
  const lat = [];
  let lastOwn = 0;
  const recv = phase.extra.length ? [...phase.recv.subarray(0, phase.nrecv), ...phase.extra]
    : phase.recv.subarray(0, phase.nrecv);
  for (let j = 0; j < recv.length; j += 2) {
    let id = recv[j];
    if (id < 0) id = phase.seqToId.get(-id); // STOMP by seq: only this phase's seqs count
    if (id === undefined || !(id < k) || !phase.sent[id]) continue;
    lat.push(recv[j + 1] - phase.sent[id]);
    lastOwn = Math.max(lastOwn, recv[j + 1]);
  }
  phase.delivered = lat.length;
  phase.lastRecv = lastOwn;
  lat.sort((a, b) => a - b);
  const pct = (p) => (lat.length ? Math.round(lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] * 10) / 10 : null);
  const secs = (phase.lastRecv - t0) / 1000;
  // CPU use while the phase ran (t0 .. last delivery + the 20 ms poll): 1.0 = one core busy.
  const cpu1 = [cpuSeconds('self'), cpuSeconds(cfg.serverPid)];
  const wall = (now() - t0) / 1000;
  const share = (i, j) => (cpu0[i] && cpu1[i] && wall > 0
    ? Math.round(((cpu1[i][j] - cpu0[i][j]) / wall) * 100) / 100 : null);
  const res = {
    phase: name, k, rate_events_per_s: rate || null, expected, delivered: phase.delivered,
    complete: phase.delivered >= expected,
    delivered_per_s: secs > 0 ? Math.round(phase.delivered / secs) : null,
    trigger_per_s: Math.round(k / ((triggersDone - t0) / 1000)),
    p50_ms: pct(0.5), p99_ms: pct(0.99), max_ms: lat.length ? Math.round(lat[lat.length - 1]) : null,
    trigger_errors: phase.triggerErrors,
    bytes_per_msg: phase.frames ? Math.round(phase.bytes / phase.frames) : null,
    // [user, system] cores
    client_cpu: [share(0, 0), share(0, 1)], server_cpu: [share(1, 0), share(1, 1)],
  };
  phase = null;
  return res;
}

// -- optional V8 CPU profile of one phase (cfg.profile = path prefix) ---------------------------
let inspectorSession = null;
function profilerCall(method, params = {}) {
  return new Promise((resolve, reject) => {
    inspectorSession.post(method, params, (err, res) => (err ? reject(err) : resolve(res)));
  });
}
let pyspy = null;
async function profileStart() {
  if (cfg.serverProfile && cfg.serverPid) {
    // py-spy on the server for this phase only (SIGINT makes it write the flame graph).
    pyspy = spawn(cfg.pyspy || 'py-spy', ['record', '-p', String(cfg.serverPid), '-r', '250',
      '--nonblocking', '-f', 'raw', '-o', `${cfg.serverProfile}-peak-${Date.now()}.txt`],
    { stdio: 'ignore' });
    await sleep(300);
  }
  if (!cfg.profile) return;
  inspectorSession = new inspector.Session();
  inspectorSession.connect();
  await profilerCall('Profiler.enable');
  await profilerCall('Profiler.setSamplingInterval', { interval: 500 });
  await profilerCall('Profiler.start');
}
async function profileStop(name) {
  if (pyspy) {
    const exited = new Promise((r) => pyspy.once('exit', r));
    pyspy.kill('SIGINT');
    await Promise.race([exited, sleep(10000)]);
    pyspy = null;
  }
  if (!inspectorSession) return;
  const { profile } = await profilerCall('Profiler.stop');
  fs.writeFileSync(`${cfg.profile}-${name}-${Date.now()}.cpuprofile`, JSON.stringify(profile));
  inspectorSession.disconnect();
  inspectorSession = null;
}

// -- main --------------------------------------------------------------------------------------
async function main() {
  const deadline = now() + (cfg.connectTimeoutMs || 120000);
  const rss0 = rssKb(cfg.serverPid);
  const batch = cfg.batch || 250;
  for (let i = 0; i < N && now() < deadline; i += batch) {
    const left = deadline - now();
    await Promise.race([
      Promise.all(Array.from({ length: Math.min(batch, N - i) }, () => open())),
      sleep(left),
    ]);
  }
  if (TRIGGER === 'ws' || TRIGGER === 'sio' || TRIGGER === 'stomp') {
    publisher = await Promise.race([open(true), sleep(10000).then(() => null)]);
  }
  emit({ ev: 'connected', connected, subscribed, errors, first_error: firstError });
  if (subscribed < N || (publisher === null && ['ws', 'sio', 'stomp'].includes(TRIGGER))) {
    return done({ hung: `connect phase: ${subscribed}/${N} subscribed within the deadline` });
  }
  await sleep(1000);
  const rssIdle = rssKb(cfg.serverPid);
  const out = { rss_before_kb: rss0, rss_idle_kb: rssIdle,
    rss_per_idle_conn_kb: rss0 && rssIdle ? Math.round(((rssIdle - rss0) / N) * 100) / 100 : null };
  await profileStart();
  const peak = await runPhase('peak', K, cfg.peakRate || 0, cfg.phaseTimeoutMs || 60000);
  await profileStop('peak');
  emit({ ev: 'phase', ...peak });
  out.peak = peak;
  if (!peak.complete) {
    out.half_skipped = 'peak phase incomplete within its deadline (a backlog would pollute it)';
  } else if (cfg.half !== false && peak.delivered_per_s) {
    await sleep(500);
    // Half of this server's own peak, or a fixed rate for every server (equal load).
    const rate = cfg.halfRate || Math.max(1, Math.round((peak.delivered_per_s / 2 / N) * 10) / 10);
    const kHalf = Math.max(10, Math.min(K, Math.round(rate * (cfg.halfSeconds || 5))));
    const half = await runPhase('half', kHalf, rate, cfg.phaseTimeoutMs || 60000);
    emit({ ev: 'phase', ...half });
    out.half = half;
  }
  return done(out);
}

function done(out) {
  finishedAll = true;
  emit({ ev: 'result', n: N, k: K, connected, subscribed, errors, closed_early: closedEarly,
    first_error: firstError, ...out });
  for (const s of socks) s.terminate();
  setTimeout(() => process.exit(0), 100);
}

main().catch((e) => { emit({ ev: 'result', fatal: String(e.stack || e) }); process.exit(1); });
