// The official Node `pusher` server SDK against ordercast's Pusher HTTP API.
//   node pusher_server_sdk.mjs '{"appId","key","secret","host","port","channel","presence"}'
// Prints one JSON object with every result.
import Pusher from 'pusher';

const cfg = JSON.parse(process.argv[2]);
const pusher = new Pusher({
  appId: cfg.appId, key: cfg.key, secret: cfg.secret,
  host: cfg.host, port: String(cfg.port), useTLS: false,
});
const body = async (res) => (res.status === 200 ? res.json() : { status: res.status });
const out = {};
out.trigger = await body(await pusher.trigger(cfg.channel, 'from-node', { hello: 'node' },
  { info: 'subscription_count' }));
out.batch = await body(await pusher.triggerBatch([
  { channel: cfg.channel, name: 'batch-1', data: { n: 1 } },
  { channel: cfg.channel, name: 'batch-2', data: { n: 2 } },
]));
out.channels = await body(await pusher.get({ path: '/channels' }));
out.channel = await body(await pusher.get({ path: `/channels/${cfg.channel}`,
  params: { info: 'subscription_count' } }));
out.users = await body(await pusher.get({ path: `/channels/${cfg.presence}/users` }));
try {
  await pusher.trigger(cfg.channel, 'too-big', 'x'.repeat(11000));
  out.too_big = 200;
} catch (e) { out.too_big = e.status; }
const bad = new Pusher({ appId: cfg.appId, key: cfg.key, secret: 'wrong', host: cfg.host,
  port: String(cfg.port), useTLS: false });
try { await bad.trigger(cfg.channel, 'x', {}); out.bad_secret = 200; } catch (e) { out.bad_secret = e.status; }
const auth = pusher.authorizeChannel('123.456', cfg.channel);
out.auth_ok = typeof auth.auth === 'string';
process.stdout.write(JSON.stringify(out) + '\n');
