// The ordercast operator console: plain ES module, no build step, no dependencies.
// Credentials stay in this tab's sessionStorage and go along as the Authorization header.

const $ = (sel, root = document) => root.querySelector(sel);
const main = $('#main');
const STATUS_COLUMNS = [
  ['new', ['draft', 'priced', 'submitted']],
  ['accepted', ['accepted', 'held']],
  ['preparing', ['preparing']],
  ['ready', ['ready']],
  ['handed off', ['handed_off']],
  ['completed', ['completed']],
  ['closed', ['rejected', 'cancelled', 'failed']],
];
const state = { session: null, location: null, stream: null, timer: null };

function authHeader() {
  const token = sessionStorage.getItem('oc.token');
  if (token) return `Bearer ${token}`;
  const key = sessionStorage.getItem('oc.key');
  const secret = sessionStorage.getItem('oc.secret');
  return key ? `Basic ${btoa(`${key}:${secret}`)}` : null;
}

async function api(path, options = {}) {
  const headers = { Authorization: authHeader(), ...(options.headers || {}) };
  if (options.body) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, { ...options, headers });
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = new Error(body && body.detail ? body.detail : `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : '');
const money = (cents) => (cents / 100).toFixed(2);
const short = (id) => (id ? id.slice(-8) : '');

// -- sign-in ---------------------------------------------------------------------------------

async function signIn(form) {
  const data = new FormData(form);
  sessionStorage.clear();
  if (data.get('token')) sessionStorage.setItem('oc.token', data.get('token').trim());
  else {
    sessionStorage.setItem('oc.key', data.get('key').trim());
    sessionStorage.setItem('oc.secret', data.get('secret').trim());
  }
  try {
    await start();
  } catch (error) {
    sessionStorage.clear();
    $('#signin-error').textContent = `Sign-in failed: ${error.message}`;
  }
}

async function start() {
  state.session = await api('/dashboard/api/session');
  const { session } = state;
  $('#who').textContent =
    session.kind === 'admin' ? 'admin' : `${session.app.name} (${session.app.kind})`;
  const select = $('#location');
  select.replaceChildren(
    ...session.locations.map((l) =>
      el('option', { value: l.id }, `${l.tenant_name} / ${l.name}`)),
  );
  state.location = sessionStorage.getItem('oc.location') || session.locations[0]?.id || null;
  if (state.location) select.value = state.location;
  $('#nav').hidden = false;
  $('#signout').hidden = false;
  if (!location.hash || location.hash === '#/') location.hash = '#/board';
  route();
}

// -- pages -----------------------------------------------------------------------------------

function stopPage() {
  if (state.stream) state.stream.abort();
  state.stream = null;
  clearInterval(state.timer);
  state.timer = null;
  $('#live').hidden = true;
  $('#pause').hidden = true;
}

function route() {
  if (!state.session) return;
  stopPage();
  const [, page, arg] = location.hash.split('/');
  for (const link of document.querySelectorAll('#nav a')) {
    link.classList.toggle('current', link.dataset.page === page);
  }
  if (page === 'order') return timelinePage(arg);
  if (page === 'endpoints') return endpointsPage();
  if (page === 'connections') return connectionsPage();
  return boardPage();
}

// The live orders board: SSE over fetch, with resume by seq after a reconnect.
function boardPage() {
  if (!state.location) {
    main.replaceChildren(el('p', { class: 'empty' }, 'No location to show.'));
    return;
  }
  const cards = new Map(); // order id -> {order, node}
  const columns = new Map();
  const board = el('section', { class: 'board', id: 'board' });
  for (const [title, statuses] of STATUS_COLUMNS) {
    const list = el('div', { class: 'cards' });
    for (const status of statuses) columns.set(status, list);
    board.append(el('div', { class: 'column', 'data-column': title },
      el('h2', {}, title), list));
  }
  main.replaceChildren(board);

  function render(order, flags = {}) {
    let entry = cards.get(order.id);
    if (entry && entry.order.version >= order.version && !flags.force) return; // old news
    const badges = [];
    if (flags.stale) badges.push(el('span', { class: 'badge stale', title: 'an update arrived out of order: recorded, not applied' }, 'stale update'));
    if (flags.late) badges.push(el('span', { class: 'badge late', title: 'its source time was long before it arrived' }, 'late'));
    if (flags.resumed) badges.push(el('span', { class: 'badge resumed', title: 'events read back by seq after a reconnect' }, `+${flags.resumed} resumed`));
    const node = el('a', {
      class: 'order', href: `#/order/${order.id}`,
      'data-order-id': order.id, 'data-status': order.status, 'data-version': order.version,
    },
    el('div', { class: 'row' }, el('b', {}, `#${short(order.id)}`), el('span', { class: 'status' }, order.status.replace('_', ' '))),
    el('div', { class: 'row' }, order.consumer || order.type, el('span', {}, `${order.items} items · ${money(order.total)}`)),
    el('div', { class: 'row muted' }, `v${order.version} · ${time(order.updated_at)}`, badges));
    const column = columns.get(order.status) || columns.get('submitted');
    if (entry) {
      entry.node.replaceWith(node);
      if (entry.order.status !== order.status) node.classList.add('moved');
    }
    column.prepend(node);
    cards.set(order.id, { order, node });
  }

  async function resume(snapshot) {
    // After a reconnect: read what each shown order missed, by seq, then show the snapshot.
    for (const order of snapshot) {
      const known = cards.get(order.id);
      if (known && known.order.version < order.version) {
        try {
          const page = await api(`/v1/orders/${order.id}/events?after_seq=${known.order.version}`);
          const events = page.events || [];
          render(order, {
            force: true,
            resumed: events.length,
            stale: events.some((e) => e.type.endsWith('stale_update')),
          });
          continue;
        } catch (error) { /* fall through: show the snapshot */ }
      }
      render(order);
    }
  }

  async function handle(event, data, first) {
    if (event === 'snapshot' || event === 'resync') {
      if (first) data.orders.slice().reverse().forEach((o) => render(o));
      else await resume(data.orders.slice().reverse());
    } else if (event === 'change') {
      render(data.order, {
        stale: data.events.some((e) => e.stale),
        late: data.events.some((e) => e.late),
      });
    }
  }

  // The page's stream: reconnects with a back-off after an error; "Pause" closes it (the
  // board stops moving while someone reads it) and "Resume" reconnects, reading back by seq
  // what each order missed meanwhile.
  const controller = new AbortController();
  state.stream = controller;
  const live = $('#live');
  const pause = $('#pause');
  live.hidden = false;
  pause.hidden = false;
  let current = null; // this connection's AbortController
  let paused = false;
  let wake = null;
  pause.textContent = 'Pause';
  pause.onclick = () => {
    paused = !paused;
    pause.textContent = paused ? 'Resume' : 'Pause';
    if (paused && current) current.abort();
    if (!paused && wake) wake();
  };
  let attempt = 0;
  let connections = 0;
  (async function connect() {
    while (!controller.signal.aborted) {
      if (paused) {
        live.textContent = 'paused';
        live.className = 'live off';
        await new Promise((resolve) => { wake = resolve; });
        wake = null;
        continue;
      }
      let first = connections === 0;
      current = new AbortController();
      const stop = () => current.abort();
      controller.signal.addEventListener('abort', stop);
      try {
        const response = await fetch(`/dashboard/api/locations/${state.location}/stream`, {
          headers: { Authorization: authHeader(), Accept: 'text/event-stream' },
          signal: current.signal,
        });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        connections += 1;
        attempt = 0;
        live.textContent = 'live';
        live.className = 'live on';
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let cut;
          while ((cut = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            let name = 'message';
            let data = '';
            for (const line of block.split('\n')) {
              if (line.startsWith('event: ')) name = line.slice(7);
              else if (line.startsWith('data: ')) data += line.slice(6);
            }
            if (data) {
              await handle(name, JSON.parse(data), first);
              if (name === 'snapshot') first = false;
            }
          }
        }
      } catch (error) {
        if (controller.signal.aborted) return;
      } finally {
        controller.signal.removeEventListener('abort', stop);
      }
      if (paused) continue;
      live.textContent = 'reconnecting…';
      live.className = 'live off';
      attempt += 1;
      await new Promise((resolve) => setTimeout(resolve, Math.min(500 * attempt, 5000)));
    }
  })();
}

async function timelinePage(orderId) {
  main.replaceChildren(el('p', {}, 'Loading…'));
  const data = await api(`/dashboard/api/orders/${orderId}/timeline`);
  const { order } = data;
  const rows = data.events.map((e) => el('tr', { 'data-seq': e.seq, class: e.stale ? 'stale' : '' },
    el('td', {}, e.seq),
    el('td', {}, el('code', {}, e.type), e.stale ? el('span', { class: 'badge stale' }, 'stale') : null,
      e.late ? el('span', { class: 'badge late' }, 'late') : null),
    el('td', {}, e.status),
    el('td', {}, e.actor ? `${e.actor.kind || ''} ${e.actor.id || ''}` : ''),
    el('td', { class: 'muted' }, el('div', {}, `occurred ${time(e.occurred_at)}`), el('div', {}, `recorded ${time(e.recorded_at)}`)),
    el('td', {}, where(e))));
  main.replaceChildren(el('section', { class: 'card' },
    el('h1', {}, `Order #${short(order.id)} `, el('span', { class: 'status' }, order.status)),
    el('p', { class: 'muted' }, `${order.id} · v${order.version} · ${order.consumer || ''} · ${order.items} items · ${money(order.total)}`),
    el('table', { class: 'timeline' },
      el('thead', {}, el('tr', {}, ['seq', 'event', 'status', 'actor', 'times', 'where it went'].map((h) => el('th', {}, h)))),
      el('tbody', {}, rows))));
}

function where(e) {
  const parts = [];
  for (const live of e.live) {
    parts.push(el('div', { class: `dest ${live.protocol}` },
      el('span', { class: 'proto' }, live.protocol), ` ${live.target} `,
      el('span', { class: 'muted' }, `${live.sockets} ${live.protocol === 'pusher' ? 'sockets' : 'subscriptions'}${live.node && live.node !== 'local' ? ` on node ${live.node}` : ''}`)));
  }
  for (const hook of e.webhooks) {
    parts.push(el('div', { class: 'dest webhook', 'data-endpoint': hook.endpoint_id },
      el('span', { class: 'proto' }, hook.dialect), ` ${hook.url} `,
      el('span', { class: `badge ${hook.status}` }, hook.status),
      el('ul', { class: 'attempts' }, hook.attempts.map((a) => el('li', { class: `attempt ${a.outcome}` },
        `#${a.attempt} ${a.status_code ?? '—'} ${a.outcome} · ${Math.round(a.latency_ms)} ms · ${time(a.at)}`,
        a.outcome !== 'delivered' ? el('span', { class: 'muted' }, ` ${a.reason}`) : null)))));
  }
  if (!parts.length) parts.push(el('span', { class: 'muted' }, 'no live subscribers or webhooks'));
  return parts;
}

async function endpointsPage() {
  const data = await api('/dashboard/api/endpoints');
  const rows = data.endpoints.map((ep) => {
    const detail = el('td', { colspan: 8, class: 'detail' });
    const detailRow = el('tr', { hidden: true }, detail);
    const base = `/v1/apps/${ep.app_id}/endpoints/${ep.id}`;
    async function showAttempts() {
      const page = await api(`${base}/attempts?limit=20`);
      detailRow.hidden = false;
      detail.replaceChildren(el('h3', {}, 'Recent attempts'), el('ul', { class: 'attempts' },
        (page.attempts || page.data || []).map((a) => el('li', { class: `attempt ${a.outcome}` },
          `${time(a.at)} #${a.attempt} ${a.status_code ?? '—'} ${a.outcome} · ${Math.round(a.latency_ms)} ms · ${a.reason}`))));
    }
    async function showDead() {
      const page = await api(`${base}/messages?status=failed&limit=50`);
      const messages = page.messages || page.data || [];
      detailRow.hidden = false;
      const list = el('ul', { class: 'dead' }, messages.map((m) => el('li', { 'data-message': m.id },
        `${m.event_type} · order ${short(m.order_id)} seq ${m.seq} · ${m.attempts} attempts · ${m.last_error || ''} `,
        el('button', { class: 'replay', onclick: async (event) => {
          const body = m.event_id ? { event_id: m.event_id, status: ['failed'] } : { order_id: m.order_id, status: ['failed'] };
          const result = await api(`${base}/replay`, { method: 'POST', body: JSON.stringify(body) });
          event.target.replaceWith(el('span', { class: 'badge replayed' }, `replayed (${result.replayed ?? result.count ?? 'queued'})`));
        } }, 'Replay'))));
      detail.replaceChildren(el('h3', {}, `Dead letters (${messages.length})`),
        messages.length ? list : el('p', { class: 'muted' }, 'none'));
    }
    async function rotate() {
      if (!confirm('Rotate the signing secret? The old one keeps signing for 24 hours.')) return;
      const result = await api(`${base}/secret/rotate`, { method: 'POST', body: '{}' });
      detailRow.hidden = false;
      detail.replaceChildren(el('p', {}, 'New secret (shown once): ', el('code', { class: 'secret' }, result.secret)));
    }
    return [el('tr', { 'data-endpoint': ep.id },
      el('td', {}, ep.app_name || ep.app_id),
      el('td', {}, el('code', {}, ep.url), el('div', { class: 'muted' }, ep.dialect)),
      el('td', {}, el('span', { class: `badge ${ep.health}` }, ep.health),
        ep.disabled_reason ? el('div', { class: 'muted' }, ep.disabled_reason) : null,
        ep.failing_since ? el('div', { class: 'muted' }, `failing since ${time(ep.failing_since)}`) : null),
      el('td', {}, ep.failure_rate_24h === null ? '—' : `${Math.round(ep.failure_rate_24h * 100)} %`),
      el('td', {}, ep.attempts_24h),
      el('td', {}, time(ep.last_attempt_at)),
      el('td', { class: 'dead-count' }, ep.dead_letters),
      el('td', { class: 'actions' },
        el('button', { onclick: showAttempts }, 'Attempts'),
        el('button', { class: 'dead-letters', onclick: showDead }, 'Dead letters'),
        el('button', { onclick: rotate }, 'Rotate secret'))), detailRow];
  });
  main.replaceChildren(el('section', { class: 'card' }, el('h1', {}, 'Webhook endpoints'),
    rows.length ? el('table', { class: 'endpoints' },
      el('thead', {}, el('tr', {}, ['app', 'endpoint', 'health', 'failures (24 h)', 'attempts (24 h)', 'last attempt', 'dead letters', ''].map((h) => el('th', {}, h)))),
      el('tbody', {}, rows.flat())) : el('p', { class: 'muted' }, 'No endpoints.')));
}

async function connectionsPage() {
  async function refresh() {
    const data = await api('/dashboard/api/connections');
    const blocks = data.apps.map((app) => el('div', { class: 'card conn', 'data-app': app.app_id, 'data-protocol': app.protocol },
      el('h2', {}, `${app.app_name || app.app_id} `, el('span', { class: 'proto' }, app.protocol),
        el('span', { class: 'muted' }, ` ${app.connections} connections · ${app.node === 'cluster' ? `cluster (${(app.nodes || []).map((n) => `${n.node}: ${n.connections}`).join(', ')})` : `node ${app.node}`}`)),
      el('table', {}, el('tbody', {}, app.channels.map((c) => el('tr', {},
        el('td', {}, el('code', {}, c.name)),
        el('td', {}, `${c.subscribers} ${app.protocol === 'pusher' ? 'sockets' : 'subscriptions'}`),
        el('td', {}, c.members ? c.members.map((m) => el('span', { class: 'member' }, m.user_id)) : '')))))));
    main.replaceChildren(el('section', {}, el('h1', {}, 'Connections'),
      blocks.length ? blocks : el('p', { class: 'muted' }, 'No connections.')));
  }
  await refresh();
  state.timer = setInterval(() => refresh().catch(() => {}), 2000);
}

// -- wiring ----------------------------------------------------------------------------------

$('#signin').addEventListener('submit', (event) => {
  event.preventDefault();
  signIn(event.target);
});
$('#signout').addEventListener('click', () => {
  sessionStorage.clear();
  location.hash = '';
  location.reload();
});
$('#location').addEventListener('change', (event) => {
  state.location = event.target.value;
  sessionStorage.setItem('oc.location', state.location);
  location.hash = '#/board';
  route();
});
window.addEventListener('hashchange', route);
if (authHeader()) start().catch(() => sessionStorage.clear());
