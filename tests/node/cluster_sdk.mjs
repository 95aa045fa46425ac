// The official Node `pusher` server SDK, one call per line, for tests/e2e/test_cluster.py.
//   node cluster_sdk.mjs '{"appId","key","secret","host","port"}'
// stdin: JSON lines {"op":"trigger","channel","event","data","info"?} | {"op":"batch","events"}
//        | {"op":"sendToUser","user","event","data"} | {"op":"terminate","user"}
//        | {"op":"get","path","params"?} | {"op":"target","port"} (another node's HTTP port)
// stdout: one JSON line per call: {"ok":true,"status","body"} or {"ok":false,"status"}.
import Pusher from 'pusher';
import readline from 'node:readline';

const cfg = JSON.parse(process.argv[2]);
const make = (port) => new Pusher({
  appId: cfg.appId, key: cfg.key, secret: cfg.secret,
  host: cfg.host, port: String(port), useTLS: false,
});
let pusher = make(cfg.port);
const out = (msg) => process.stdout.write(JSON.stringify(msg) + '\n');

async function call(cmd) {
  if (cmd.op === 'target') { pusher = make(cmd.port); return { status: 200 }; }
  if (cmd.op === 'trigger') {
    const opts = cmd.info ? { info: cmd.info } : {};
    return pusher.trigger(cmd.channel, cmd.event, cmd.data, opts);
  }
  if (cmd.op === 'batch') return pusher.triggerBatch(cmd.events);
  if (cmd.op === 'sendToUser') return pusher.sendToUser(cmd.user, cmd.event, cmd.data);
  if (cmd.op === 'terminate') return pusher.terminateUserConnections(cmd.user);
  if (cmd.op === 'get') return pusher.get({ path: cmd.path, params: cmd.params || {} });
  throw new Error('unknown op ' + cmd.op);
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  const cmd = JSON.parse(line);
  try {
    const res = await call(cmd);
    let body = null;
    if (res && typeof res.text === 'function') {
      const text = await res.text();
      body = text ? JSON.parse(text) : null;
    }
    out({ ok: true, status: res.status, body });
  } catch (e) {
    out({ ok: false, status: e.status || null, error: String(e.message || e) });
  }
});
rl.on('close', () => process.exit(0));
