// Dinner-rush load generator (one Node process, one clock): the customers' and kitchens'
// sockets and the POS clients that move orders through their lifecycle over REST.
//
//   node loadgen.mjs CONFIG.json OUT.json
//
// CONFIG (written by bench/rush/run.py): the world (orders with their customer's token and
// socket kind, KDS logins per venue, the credentials each kind of app changes orders with),
// the rates to step through and how long each step lasts. The load generator
//   1. opens every customer socket (Pusher `private-o-{order}` through ordercast's auth
//      endpoint, or STOMP `/order-changes/{user}/{order}`) and every KDS socket (STOMP
//      `/kds/{tenant}/{venue}`), and waits until each is subscribed;
//   2. per step, sends changes at R per second (paced by a schedule, never faster) from
//      `posClients` keep-alive HTTP clients, each change being the next lifecycle step of an
//      order (accepted, a note, preparing, ready, courier job, courier statuses, or a
//      cancellation), one order's steps strictly one after another;
//   3. writes OUT.json: every change (order, send and response times, the seqs it made) and
//      every socket receipt (subscriber, order, seq, time). Times are epoch milliseconds
//      (performance.timeOrigin + performance.now()), the clock the webhook receiver uses too.
// run.py joins these with the receiver's log and the event log read back over REST.
import fs from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';

const require = createRequire(new URL('../../tests/node/package.json', import.meta.url));
const WebSocket = require('ws');

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const OUT = process.argv[3];
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (o) => process.stdout.write(JSON.stringify(o) + '\n');
// This process's own stalls (its GC, a long callback): a receipt that waited behind one is
// late by it, so the report shows the longest per step next to the latencies it inflates.
const stall = monitorEventLoopDelay({ resolution: 5 });
stall.enable();

// Several REST nodes (run.py --rest-nodes): an order's changes always through the same one.
const restBases = cfg.httpBases ?? [cfg.httpBase];

const agent = new http.Agent({ keepAlive: true, maxSockets: Math.max(16, cfg.posClients * 2) });
function request(method, url, body, headers) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const h = { ...headers };
    if (data !== undefined) {
      h['content-length'] = Buffer.byteLength(data);
      if (!h['content-type']) h['content-type'] = 'application/json';
    }
    const req = http.request(url, { method, agent, timeout: 30000, headers: h }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        resolve({ status: res.statusCode, text });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout after 30 s')));
    req.on('error', reject);
    req.end(data);
  });
}

// -- receipts ----------------------------------------------------------------------------------
// Flat arrays (subscriber index, order index, seq, time): a million receipts stay cheap.
const recvSub = [];
const recvOrder = [];
const recvSeq = [];
const recvT = [];
const orderIndex = new Map(cfg.orders.map((o, i) => [o.id, i]));
let errors = 0;
const errorSamples = [];
function noteError(where, msg) {
  errors++;
  if (errorSamples.length < 20) errorSamples.push(`${where}: ${String(msg).slice(0, 300)}`);
}
function receipt(sub, orderId, seq, t) {
  const oi = orderIndex.get(orderId);
  if (oi === undefined || !(seq >= 0)) return noteError(`sub ${sub}`, `unknown order ${orderId}/${seq}`);
  recvSub.push(sub);
  recvOrder.push(oi);
  recvSeq.push(seq);
  recvT.push(t);
}

// -- sockets -----------------------------------------------------------------------------------
const subs = []; // {kind, dest, ready}
const stompFrame = (command, headers, body = '') =>
  command + '\n' + Object.entries(headers).map(([a, b]) => `${a}:${b}`).join('\n') + '\n\n' + body + '\0';

function stompHeaders(text) {
  const end = text.indexOf('\n\n');
  const head = text.slice(0, end < 0 ? text.length : end).split('\n');
  const h = { command: head[0] };
  for (let i = 1; i < head.length; i++) {
    const c = head[i].indexOf(':');
    if (c > 0 && !(head[i].slice(0, c) in h)) h[head[i].slice(0, c)] = head[i].slice(c + 1);
  }
  return h;
}

function openStomp(sub, login, passcode, destination, extra = {}) {
  return new Promise((resolve) => {
    const ws = new WebSocket(cfg.stompUrl, ['v12.stomp'], { perMessageDeflate: false, handshakeTimeout: 60000 });
    let done = false;
    const finish = (ok) => { if (!done) { done = true; resolve(ok); } };
    ws.on('open', () => ws.send(stompFrame('CONNECT', { 'accept-version': '1.2', 'heart-beat': '0,0', host: '/', login, passcode })));
    ws.on('message', (buf) => {
      const t = now();
      const text = buf.toString();
      if (text === '\n' || text === '\r\n') return;
      const h = stompHeaders(text);
      if (h.command === 'MESSAGE') return receipt(sub, h['order-id'], Number(h.seq), t);
      if (h.command === 'CONNECTED') {
        ws.send(stompFrame('SUBSCRIBE', { id: 's', destination, ack: 'auto', receipt: 'r', ...extra }));
      } else if (h.command === 'RECEIPT') {
        finish(true);
      } else if (h.command === 'ERROR') {
        noteError(`stomp ${destination}`, text.slice(0, 300));
        finish(false);
      }
    });
    ws.on('error', (e) => { noteError(`stomp ${destination}`, e.message); finish(false); });
    ws.on('close', () => { if (!done) noteError(`stomp ${destination}`, 'closed'); finish(false); });
    subs[sub].ws = ws;
  });
}

function openPusher(sub, order) {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${cfg.pusherBase}${cfg.channelKeys[order.tenant]}?protocol=7`, { perMessageDeflate: false, handshakeTimeout: 60000 });
    const channel = `private-o-${order.id}`;
    let done = false;
    const finish = (ok) => { if (!done) { done = true; resolve(ok); } };
    ws.on('message', async (buf) => {
      const t = now();
      let msg;
      try { msg = JSON.parse(buf.toString()); } catch (e) { return noteError('pusher', e.message); }
      const name = msg.event;
      if (name === 'pusher:connection_established') {
        const socketId = JSON.parse(msg.data).socket_id;
        const body = new URLSearchParams({ key: cfg.channelKeys[order.tenant], access_token: order.token,
          socket_id: socketId, channel_name: channel }).toString();
        try {
          const r = await request('POST', `${cfg.authBase ?? cfg.httpBase}/api/v1/pusher/auth`, body,
            { 'content-type': 'application/x-www-form-urlencoded' });
          if (r.status !== 200) throw new Error(`auth ${r.status} ${r.text.slice(0, 200)}`);
          ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel, auth: JSON.parse(r.text).auth } }));
        } catch (e) { noteError('pusher auth', e.message); finish(false); }
      } else if (name === 'pusher_internal:subscription_succeeded') {
        finish(true);
      } else if (name === 'pusher:subscription_error' || name === 'pusher:error') {
        noteError('pusher', buf.toString().slice(0, 300));
        finish(false);
      } else if (name === 'pusher:ping') {
        ws.send('{"event":"pusher:pong","data":{}}');
      } else if (msg.channel === channel) {
        const data = typeof msg.data === 'string' ? JSON.parse(msg.data) : msg.data;
        receipt(sub, data.order_id, Number(data.seq), t);
      }
    });
    ws.on('error', (e) => { noteError('pusher', e.message); finish(false); });
    ws.on('close', () => { if (!done) noteError('pusher', 'closed'); finish(false); });
    subs[sub].ws = ws;
  });
}

async function pool(items, width, fn) {
  let next = 0;
  let ok = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) {
      const i = next++;
      if (await fn(items[i], i)) ok++;
    }
  }));
  return ok;
}

async function connectAll() {
  const jobs = [];
  cfg.orders.forEach((o, oi) => {
    const sub = subs.length;
    subs.push({ kind: o.proto, order: oi, dest: o.proto === 'pusher' ? `private-o-${o.id}` : `/order-changes/${o.user}/${o.id}` });
    jobs.push(() => (o.proto === 'pusher' ? openPusher(sub, o) : openStomp(sub, o.token, '', subs[sub].dest)));
  });
  for (const k of cfg.kds) {
    const sub = subs.length;
    const dest = `/kds/${k.tenant}/${k.venue}`;
    subs.push({ kind: 'kds', venue: k.venue, tenant: k.tenant, dest });
    jobs.push(() => openStomp(sub, k.login, k.passcode, dest));
  }
  const t0 = now();
  const ok = await pool(jobs, 64, (job) => job());
  log({ ev: 'connected', subscribers: subs.length, ok, seconds: (now() - t0) / 1000, errors });
  return ok;
}

// -- the POS clients ---------------------------------------------------------------------------
// One order's lifecycle after it was placed: most orders are delivered by a courier, some
// are collected, a few are cancelled (chosen by index, so every run does the same).
function stepsFor(oi) {
  const o = cfg.orders[oi];
  const pos = { authorization: cfg.posAuth[o.loc] };
  const rider = { authorization: cfg.riderAuth[o.loc] };
  const move = (to) => ({ kind: to, path: `/v1/orders/${o.id}/transitions`, body: { to }, auth: pos });
  const note = (text) => ({ kind: 'note', path: `/v1/orders/${o.id}/notes`, body: { text }, auth: pos });
  if (oi % 20 === 7) {
    return [move('accepted'), { kind: 'cancel', path: `/v1/orders/${o.id}/cancellation`,
      body: { reason: 'out of stock', by: 'venue' }, auth: pos }];
  }
  const steps = [move('accepted'), note('Your order is being made'), move('preparing'), move('ready')];
  if (oi % 4 === 1) return [...steps, move('completed')];
  return [...steps,
    { kind: 'delivery', path: `/v1/orders/${o.id}/deliveries`, body: { provider: 'rush-couriers' }, auth: pos },
    { kind: 'courier', status: 'courier_confirmed', auth: rider },
    { kind: 'courier', status: 'courier_picked_up', auth: rider },
    { kind: 'courier', status: 'courier_dropped_off', auth: rider }];
}

const changes = []; // {order, step, kind, tSend, tResp, status, seqs}
const state = cfg.orders.map((_, oi) => ({ steps: stepsFor(oi), next: 0, busy: false, delivery: null }));
let cursor = 0;

// The next order with a step left that is not waiting for its previous step (round-robin, so
// one order's steps are spread over the run like a kitchen's would be).
function nextOrder() {
  for (let n = 0; n < state.length; n++) {
    const oi = cursor;
    cursor = (cursor + 1) % state.length;
    const s = state[oi];
    if (!s.busy && s.next < s.steps.length) return oi;
  }
  return -1;
}

async function change(oi, stepNo) {
  const s = state[oi];
  const step = s.steps[s.next];
  s.busy = true;
  const path = step.kind === 'courier' ? `/v1/deliveries/${s.delivery}/status` : step.path;
  const body = step.kind === 'courier' ? { status: step.status } : step.body;
  const rec = { order: oi, step: stepNo, kind: step.kind, tSend: now(), tResp: 0, status: 0, seqs: [] };
  try {
    const r = await request('POST', restBases[oi % restBases.length] + path, body, step.auth);
    rec.tResp = now();
    rec.status = r.status;
    if (r.status >= 300) {
      noteError(`${step.kind} ${cfg.orders[oi].id}`, `${r.status} ${r.text.slice(0, 200)}`);
    } else {
      const doc = JSON.parse(r.text);
      if (step.kind === 'delivery') s.delivery = doc.id;
      for (const e of doc.events || []) rec.seqs.push(e.seq);
      if (step.kind === 'delivery' && !rec.seqs.length && doc.version) rec.seqs.push(doc.version);
    }
  } catch (e) {
    rec.tResp = now();
    noteError(`${step.kind}`, e.message);
  }
  changes.push(rec);
  s.next++;
  s.busy = false;
}

// One step: R changes per second for `seconds`, each started on its schedule (a change that
// finds no free client waits for one: the achieved rate is reported next to the asked one).
async function runStep(stepNo, rate, seconds) {
  const total = Math.round(rate * seconds);
  const interval = 1000 / rate;
  const t0 = now();
  stall.reset();
  let started = 0;
  let inflight = 0;
  let exhausted = false;
  const running = new Set();
  while (started < total) {
    const due = t0 + started * interval;
    const wait = due - now();
    if (wait > 1) await sleep(wait);
    while (inflight >= cfg.posClients) await Promise.race(running);
    const oi = nextOrder();
    if (oi < 0) {
      if (!inflight) { exhausted = true; break; }
      await Promise.race(running);
      continue;
    }
    inflight++;
    const p = change(oi, stepNo).finally(() => { inflight--; running.delete(p); });
    running.add(p);
    started++;
  }
  await Promise.all(running);
  const elapsed = (now() - t0) / 1000;
  const stallMaxMs = stall.max / 1e6;
  log({ ev: 'step', step: stepNo, rate, changes: started, seconds: elapsed, achieved: started / elapsed, exhausted, errors, stallMaxMs });
  return { step: stepNo, rate, changes: started, tStart: t0, tEnd: now(), achieved: started / elapsed, exhausted, stallMaxMs };
}

async function main() {
  const ok = await connectAll();
  const steps = [];
  if (ok === subs.length) {
    for (let i = 0; i < cfg.rates.length; i++) {
      const st = await runStep(i, cfg.rates[i], cfg.stepSeconds);
      steps.push(st);
      // Let the step's messages land before the next one starts (bounded).
      await sleep(cfg.settleMs);
      if (st.exhausted) break;
      // Past saturation the POS clients cannot send at the asked rate: later steps would
      // measure a backlog, not a rate.
      if (st.achieved < 0.8 * st.rate) break;
    }
  }
  fs.writeFileSync(OUT, JSON.stringify({
    subscribers: subs.map(({ kind, order, dest, venue, tenant }) => ({ kind, order, dest, venue, tenant })),
    steps, changes, errors, errorSamples,
    receipts: { sub: recvSub, order: recvOrder, seq: recvSeq, t: recvT },
  }));
  for (const s of subs) s.ws?.terminate();
  log({ ev: 'done', errors });
  process.exit(0);
}

main().catch((e) => { log({ ev: 'fatal', error: String(e && e.stack || e) }); process.exit(1); });
