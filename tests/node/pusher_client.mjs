// A pusher-js (or laravel-echo over pusher-js) client that reports what it sees as JSON
// lines on stdout and takes commands as JSON lines on stdin. Used by tests/e2e/test_pusher_*.py.
//   node pusher_client.mjs '{"key":..,"wsPort":..,"authEndpoint":..,"channels":[..],"echo":false}'
// Commands: {"cmd":"subscribe","channel"}, {"cmd":"unsubscribe","channel"},
//           {"cmd":"client_event","channel","event","data"}, {"cmd":"signin"},
//           {"cmd":"disconnect"}, {"cmd":"connect"}
import Pusher from 'pusher-js';
import readline from 'node:readline';

const cfg = JSON.parse(process.argv[2]);
const out = (msg) => process.stdout.write(JSON.stringify(msg) + '\n');

const options = {
  wsHost: '127.0.0.1',
  wsPort: cfg.wsPort,
  forceTLS: false,
  enabledTransports: ['ws'],
  disableStats: true,
  cluster: 'ordercast',
  channelAuthorization: {
    endpoint: cfg.authEndpoint,
    transport: 'ajax',
    headers: cfg.authHeaders || {},
  },
};
if (cfg.userAuthEndpoint) {
  options.userAuthentication = {
    endpoint: cfg.userAuthEndpoint,
    transport: 'ajax',
    headers: cfg.authHeaders || {},
  };
}

let pusher;
let echo = null;
if (cfg.echo) {
  const { default: Echo } = await import('laravel-echo');
  globalThis.Pusher = Pusher;
  echo = new Echo({ broadcaster: 'pusher', key: cfg.key, Pusher, ...options });
  pusher = echo.connector.pusher;
} else {
  pusher = new Pusher(cfg.key, options);
}

pusher.connection.bind('state_change', (s) => out({ type: 'state', current: s.current }));
pusher.connection.bind('connected', () =>
  out({ type: 'connected', socket_id: pusher.connection.socket_id }));
pusher.connection.bind('error', (e) =>
  out({ type: 'connection_error', data: e && e.data ? e.data : null }));

const channels = {};
function subscribe(name) {
  if (echo) {
    // Laravel Echo adds its own prefixes: private('o-1') is private-o-1, join() is presence-.
    let ch;
    if (name.startsWith('presence-')) {
      ch = echo.join(name.slice('presence-'.length))
        .here((members) => out({ type: 'subscribed', channel: name, members: members.length }))
        .joining((m) => out({ type: 'member_added', channel: name, id: m && m.id }))
        .leaving((m) => out({ type: 'member_removed', channel: name, id: m && m.id }));
    } else {
      ch = echo.private(name.slice('private-'.length));
      ch.subscribed(() => out({ type: 'subscribed', channel: name }));
    }
    ch.error((e) => out({ type: 'subscription_error', channel: name, status: e && e.status }));
    for (const ev of cfg.events || []) {
      ch.listen('.' + ev, (data) => out({ type: 'event', channel: name, event: ev, data }));
    }
    channels[name] = ch;
    return;
  }
  const ch = pusher.subscribe(name);
  channels[name] = ch;
  ch.bind('pusher:subscription_succeeded', (members) => {
    const msg = { type: 'subscribed', channel: name };
    if (members && typeof members.count === 'number') {
      msg.members = members.count;
      msg.me = members.me ? members.me.id : null;
    }
    out(msg);
  });
  ch.bind('pusher:subscription_error', (e) =>
    out({ type: 'subscription_error', channel: name, status: e && e.status, error: e && e.error }));
  ch.bind('pusher:member_added', (m) => out({ type: 'member_added', channel: name, id: m.id }));
  ch.bind('pusher:member_removed', (m) => out({ type: 'member_removed', channel: name, id: m.id }));
  ch.bind('pusher:cache_miss', () => out({ type: 'cache_miss', channel: name }));
  ch.bind_global((event, data) => {
    if (event.startsWith('pusher:') || event.startsWith('pusher_internal:')) return;
    out({ type: 'event', channel: name, event, data });
  });
}

for (const name of cfg.channels || []) subscribe(name);


const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  let cmd;
  try { cmd = JSON.parse(line); } catch { return; }
  if (cmd.cmd === 'subscribe') subscribe(cmd.channel);
  else if (cmd.cmd === 'unsubscribe') { pusher.unsubscribe(cmd.channel); out({ type: 'unsubscribed', channel: cmd.channel }); }
  else if (cmd.cmd === 'client_event') {
    const ok = pusher.channel(cmd.channel).trigger(cmd.event, cmd.data);
    out({ type: 'client_event_sent', ok });
  } else if (cmd.cmd === 'signin') {
    pusher.signin();
    pusher.user.signinDonePromise.then(() => {
      // sendToUser: events on the user's own #server-to-user-{id} channel
      pusher.user.bind_global((event, data) => {
        if (!event.startsWith('pusher')) out({ type: 'user_event', event, data });
      });
      // pusher-js subscribes to #server-to-user-{id} only after signin_success: report the
      // sign-in once that subscription is confirmed, or a sendToUser sent at once may come
      // before the socket is on its user channel (and is then, as on Pusher, not delivered).
      let reported = false;
      const report = () => {
        if (reported) return;
        reported = true;
        out({ type: 'signed_in', id: pusher.user.user_data && pusher.user.user_data.id });
      };
      const own = pusher.user.serverToUserChannel;
      if (!own || own.subscribed) report();
      else own.bind('pusher:subscription_succeeded', report);
    });
  } else if (cmd.cmd === 'disconnect') pusher.disconnect();
  else if (cmd.cmd === 'connect') pusher.connect();
  else if (cmd.cmd === 'exit') process.exit(0);
});
rl.on('close', () => process.exit(0));
