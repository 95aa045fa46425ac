// Drive the operator console in headless Chromium (Debian's chromium, driven by
// playwright-core): sign in with an app key, watch orders appear and move on the live board,
// open a timeline and see its webhook attempt, replay a dead letter, look at connections.
// Input: env OC_URL, OC_KEY, OC_SECRET, OC_LOCATION, OC_FAILING_ENDPOINT, SHOTS (a folder),
// CHROMIUM. Output: one JSON line of results on stdout; exits non-zero on any failure.
import { chromium } from 'playwright-core';
import Pusher from 'pusher-js';

const { OC_URL, OC_WS_PORT, OC_KEY, OC_SECRET, OC_LOCATION, OC_FAILING_ENDPOINT, SHOTS, CHROMIUM } = process.env;
const DEADLINE_MS = Number(process.env.DEADLINE_MS || 1000);
const auth = `Basic ${Buffer.from(`${OC_KEY}:${OC_SECRET}`).toString('base64')}`;
const results = { appeared_ms: [], moved_ms: [] };

async function rest(method, path, body) {
  const response = await fetch(`${OC_URL}${path}`, {
    method,
    headers: { Authorization: auth, 'Content-Type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await response.json();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(data)}`);
  return data;
}

const newOrder = (name) => rest('POST', '/v1/orders', {
  location_id: OC_LOCATION, type: 'pickup', user_id: `guest-${name}`,
  items: [{ pos_id: 'burger', name: 'Cheeseburger', quantity: 2, unit_price: 899 }],
  consumer: { name },
});

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 800 } });
  const errors = [];
  page.on('pageerror', (error) => errors.push(String(error)));
  page.on('request', (request) => {
    if (!request.url().startsWith(OC_URL)) errors.push(`request off the server: ${request.url()}`);
  });
  await page.goto(`${OC_URL}/dashboard`);
  await page.fill('input[name=key]', OC_KEY);
  await page.fill('input[name=secret]', OC_SECRET);
  await page.click('#signin button[type=submit]');
  await page.waitForSelector('#board');
  await page.waitForSelector('#live.on');

  // Orders created over REST appear on the board, and move, as the changes land.
  const orders = [];
  for (const name of ['Ada', 'Grace', 'Linus']) {
    const started = Date.now();
    const order = await newOrder(name);
    await page.waitForSelector(`[data-column="new"] [data-order-id="${order.id}"]`, { timeout: DEADLINE_MS });
    results.appeared_ms.push(Date.now() - started);
    orders.push(order);
  }
  for (const [order, to, column] of [[orders[0], 'preparing', 'preparing'], [orders[1], 'accepted', 'accepted'], [orders[0], 'ready', 'ready']]) {
    const started = Date.now();
    await rest('POST', `/v1/orders/${order.id}/transitions`, { to });
    await page.waitForSelector(`[data-column="${column}"] [data-order-id="${order.id}"]`, { timeout: DEADLINE_MS });
    results.moved_ms.push(Date.now() - started);
  }
  // A late, lower-rank update is recorded, not applied: the card says so.
  await rest('POST', `/v1/orders/${orders[0].id}/transitions`, { to: 'accepted' });
  await page.waitForSelector(`[data-order-id="${orders[0].id}"] .badge.stale`, { timeout: 5000 });
  await page.waitForSelector(`[data-column="ready"] [data-order-id="${orders[0].id}"]`);
  // Pause closes the stream; two changes land meanwhile and the card stays put; Resume
  // reconnects and reads them back by seq (GET /v1/orders/{id}/events?after_seq=...).
  await page.click('#pause');
  await page.waitForSelector('#live.off');
  await rest('POST', `/v1/orders/${orders[2].id}/transitions`, { to: 'accepted' });
  await rest('POST', `/v1/orders/${orders[2].id}/transitions`, { to: 'preparing' });
  results.stayed_while_paused = await page.$eval(`[data-order-id="${orders[2].id}"]`,
    (card) => card.closest('[data-column]').dataset.column);
  await page.click('#pause');
  await page.waitForSelector(`[data-column="preparing"] [data-order-id="${orders[2].id}"] .badge.resumed`, { timeout: 5000 });
  results.resumed = await page.textContent(`[data-order-id="${orders[2].id}"] .badge.resumed`);
  await page.waitForSelector('#live.on');
  results.columns = await page.$$eval('[data-order-id]', (cards) =>
    cards.map((c) => [c.dataset.orderId, c.closest('[data-column]').dataset.column]));
  await page.screenshot({ path: `${SHOTS}/dashboard-board.png` });

  // The timeline: every event by seq, with its webhook attempts.
  await page.click(`[data-order-id="${orders[0].id}"]`);
  await page.waitForSelector('table.timeline');
  await page.waitForSelector('tr[data-seq="1"] .dest.webhook li.attempt.delivered', { timeout: 10000 });
  results.timeline_seqs = await page.$$eval('table.timeline tr[data-seq]', (rows) => rows.map((r) => Number(r.dataset.seq)));
  results.first_attempt = await page.textContent('tr[data-seq="1"] .dest.webhook li.attempt.delivered');
  results.live = await page.$$eval('tr[data-seq="1"] .dest.stomp', (nodes) => nodes.map((n) => n.textContent));
  await page.screenshot({ path: `${SHOTS}/dashboard-timeline.png`, fullPage: true });

  // Webhook endpoints: the failing endpoint's dead letters, replayed with one click.
  await page.click('a[data-page=endpoints]');
  const row = `tr[data-endpoint="${OC_FAILING_ENDPOINT}"]`;
  await page.waitForSelector(row);
  results.failing_health = await page.textContent(`${row} .badge`);
  results.dead_letters_before = Number(await page.textContent(`${row} .dead-count`));
  await page.click(`${row} button.dead-letters`);
  await page.waitForSelector('ul.dead li button.replay');
  await page.screenshot({ path: `${SHOTS}/dashboard-webhooks.png`, fullPage: true });
  await page.click('ul.dead li button.replay');
  await page.waitForSelector('ul.dead li .badge.replayed');
  results.replayed = await page.textContent('ul.dead li .badge.replayed');

  // Connections: a staff tablet joins the location's presence channel with pusher-js; the
  // page shows it next to this app's STOMP screen.
  const tablet = new Pusher(OC_KEY, {
    wsHost: '127.0.0.1', wsPort: Number(OC_WS_PORT), forceTLS: false, enabledTransports: ['ws'],
    disableStats: true, cluster: 'ordercast',
    channelAuthorization: {
      transport: 'ajax',
      endpoint: `${OC_URL}/api/v1/pusher/auth?key=${OC_KEY}&secret=${OC_SECRET}&user_id=tablet-1&name=Front%20counter`,
    },
  });
  const presence = tablet.subscribe(`presence-r-${OC_LOCATION}`);
  await new Promise((resolve, reject) => {
    presence.bind('pusher:subscription_succeeded', resolve);
    presence.bind('pusher:subscription_error', reject);
  });
  await page.click('a[data-page=connections]');
  await page.waitForSelector('.conn[data-protocol="stomp"]');
  await page.waitForSelector('.conn[data-protocol="pusher"] .member', { timeout: 5000 });
  results.members = await page.$$eval('.member', (nodes) => nodes.map((n) => n.textContent));
  results.connections = await page.$$eval('.conn', (blocks) => blocks.map((b) => b.textContent));
  await page.screenshot({ path: `${SHOTS}/dashboard-connections.png`, fullPage: true });
  results.errors = errors;
  tablet.disconnect();
  console.log(JSON.stringify(results));
} finally {
  await browser.close();
}
