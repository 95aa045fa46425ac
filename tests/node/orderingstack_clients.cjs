// Ordering Stack's own npm libraries, unmodified, against a live ordercast.
//
//   node orderingstack_clients.cjs MODE   (configuration as JSON in $OS_CONFIG)
//
// MODE: pos (pos-integrator-core 0.1.6), core (ordering-core 2.0.0, a customer),
// core-kds (ordering-core as a KDS login), sockjs (sockjs-client's own transports).
// Prints one line per observation, "@@ {json}", for tests/e2e/test_orderingstack_clients.py;
// the libraries' own console output passes through. Closing stdin ends the run with a
// "summary" line.
//
// What is NOT the libraries' code, and why:
// * keytar (pos-integrator-core's password store) is a native module whose build fails on
//   Node 20 here (it is installed with --ignore-scripts, see .npmrc): its module is replaced
//   by an in-memory password store with the same functions, before the library loads it.
// * better-sqlite3@7 (pos-integrator-core's order table) does not build on Node 20 either;
//   its JavaScript loads, but a database cannot be opened. So the library's order DAO write
//   (orders-dao's upsertOrder, which pullAndProcessOrders and processOrder call with each
//   order) is replaced by a recorder: what the library pulled and processed is printed.
// ordering-core 2.0.0 requires @orderingstack/ordering-types at run time but lists it only
// as a devDependency, so package.json names it (as an app using ordering-core would).
// Everything on the wire (axios, @stomp/stompjs, sockjs-client, ws) is the libraries' own.
'use strict';

const mode = process.argv[2];
const cfg = JSON.parse(process.env.OS_CONFIG || '{}');
const out = (event, data = {}) =>
  process.stdout.write('@@ ' + JSON.stringify({ event, ...data }) + '\n');
const counters = { connects: 0, disconnects: 0, stompErrors: 0 };

function onStdinEnd(extra = () => ({})) {
  process.stdin.resume();
  process.stdin.on('end', () => {
    out('summary', { ...counters, ...extra() });
    process.exit(0);
  });
}

function replaceKeytarPasswordStore() {
  const path = require.resolve('keytar');
  const passwords = new Map();
  const key = (service, account) => `${service}\u0000${account}`;
  require.cache[path] = {
    id: path,
    filename: path,
    loaded: true,
    exports: {
      getPassword: async (service, account) => passwords.get(key(service, account)) ?? null,
      setPassword: async (service, account, password) => {
        passwords.set(key(service, account), password);
      },
      deletePassword: async (service, account) => passwords.delete(key(service, account)),
      findPassword: async () => null,
      findCredentials: async () => [],
    },
  };
}

async function pos() {
  replaceKeytarPasswordStore();
  process.env.BASE_URL = cfg.baseUrl;
  const core = require('@orderingstack/pos-integrator-core');
  const dao = require('@orderingstack/pos-integrator-core/src/db/orders-dao');
  const written = [];
  dao.upsertOrder = (order) => written.push(order);

  await core.authorization.savePasswordForUser(cfg.username, cfg.password);
  const basic = Buffer.from(`${cfg.key}:${cfg.secret}`).toString('base64');
  const { authData, err, errMsg } = await core.authorization.authorize(
    cfg.baseUrl, cfg.tenant, basic, cfg.username);
  if (err) {
    out('error', { stage: 'authorize', err: String(err), errMsg });
    process.exit(1);
  }
  out('authorized', {
    UUID: authData.UUID,
    token_type: authData.token_type,
    expires_in: authData.expires_in,
    has_refresh_token: Boolean(authData.refresh_token),
  });
  const originalError = console.error;
  console.error = (...args) => {
    if (String(args[0]).startsWith('Broker reported error')) counters.stompErrors++;
    originalError(...args);
  };
  onStdinEnd();
  await core.listener.connectWebSockets(
    cfg.tenant,
    cfg.venue,
    async () => authData.access_token,
    async (token) => {
      counters.connects++;
      await core.orderService.pullAndProcessOrders(cfg.venue, token);
      out('pulled', { orders: written.splice(0) });
      // The library subscribes right after this callback returns: report once it has.
      setImmediate(() =>
        out('connected', { transport: typeof WebSocket === 'function' ? 'websocket' : 'sockjs' }));
    },
    async () => {
      counters.disconnects++;
    },
    async (message) => {
      await core.orderService.processOrder(message);
      out('message', { order: message, written: written.splice(0).map((o) => o.id) });
    },
  );
}

function coreParams() {
  const basic = Buffer.from(`${cfg.key}:${cfg.secret}`).toString('base64');
  const refreshTokens = new Map();
  const storage = {
    getRefreshToken: async (tenant) => refreshTokens.get(tenant) ?? null,
    setRefreshToken: async (tenant, token) => {
      refreshTokens.set(tenant, token);
    },
    clearRefreshToken: async (tenant) => {
      refreshTokens.delete(tenant);
    },
  };
  return { basic, storage };
}

async function orderingCore(kds) {
  const oc = require('@orderingstack/ordering-core');
  const { basic, storage } = coreParams();
  const ok = await oc.authorizeWithUserPass(cfg.baseUrl, cfg.tenant, basic, cfg.username, cfg.password);
  if (!ok) {
    out('error', { stage: 'authorize' });
    process.exit(1);
  }
  const ctx = { BASE_URL: cfg.baseUrl, TENANT: cfg.tenant, BASIC_AUTH: basic };
  const provider = oc.createAuthDataProvider(ctx, storage);
  const auth = await provider();
  out('authorized', { UUID: auth.UUID, expired: oc.isTokenExpired(auth.token) });
  const originalError = console.error;
  console.error = (...args) => {
    if (String(args[0]).startsWith('onStompError')) counters.stompErrors++;
    originalError(...args);
  };
  onStdinEnd();
  await oc.orderChangesListener(
    cfg.baseUrl,
    cfg.tenant,
    cfg.venue,
    provider,
    (record) => {
      if (record && record.order) out('order', { order: record.order });
    },
    async () => out('auth-failure'),
    kds,
    (message) => out('notification', { message }),
    (command) => out('steering', { command }),
    {
      onWebsocketConnected: () => {
        counters.connects++;
        out('connected', { n: counters.connects });
      },
      onVenueUpdate: kds ? (venue) => out('venue', { venue }) : undefined,
    },
  );
}

async function sockjs() {
  const SockJS = require('sockjs-client');
  for (const transport of cfg.transports) {
    const got = await new Promise((resolve, reject) => {
      const sock = new SockJS(`${cfg.baseUrl}/ws`, null, { transports: [transport] });
      const frames = [];
      let result = null;
      const timer = setTimeout(() => reject(new Error(`${transport}: no message in time`)), 20000);
      sock.onopen = () => {
        sock.send(`CONNECT\naccept-version:1.2\nheart-beat:0,0\nlogin:${cfg.token}\n\n\u0000`);
      };
      sock.onmessage = (e) => {
        const text = String(e.data);
        const command = text.split('\n', 1)[0];
        frames.push(command);
        if (command === 'CONNECTED') {
          sock.send(`SUBSCRIBE\nid:s-1\ndestination:/kds/${cfg.tenant}/${cfg.venue}\nreceipt:r-1\n\n\u0000`);
        } else if (command === 'RECEIPT') {
          out('ready', { transport, used: sock.transport });
        } else if (command === 'MESSAGE') {
          clearTimeout(timer);
          const body = text.slice(text.indexOf('\n\n') + 2).replace(/\u0000\s*$/, '');
          result = { used: sock.transport, frames, order: JSON.parse(body) };
          sock.close();
        } else {
          clearTimeout(timer);
          reject(new Error(`${transport}: unexpected ${text}`));
        }
      };
      sock.onclose = (e) => {
        out('closed', { transport, code: e.code });
        if (result) resolve(result);
        else reject(new Error(`${transport}: closed ${e.code} ${e.reason}`));
      };
    });
    out('message', { transport, ...got });
  }
  out('done');
  process.exit(0);
}

const modes = { pos, core: () => orderingCore(false), 'core-kds': () => orderingCore(true), sockjs };
if (!modes[mode]) {
  out('error', { stage: 'usage', message: `unknown mode ${mode}` });
  process.exit(2);
}
modes[mode]().catch((e) => {
  out('error', { stage: mode, message: String((e && e.stack) || e) });
  process.exit(1);
});
