// Baseline: a plain Node `ws` broadcast server speaking just enough Pusher (public channel):
// connection_established, subscribe -> subscription_succeeded, and a publisher's message
// re-sent (one JSON.stringify per message) to every other subscriber in a plain loop.
//   node ws_server.mjs PORT
import { createRequire } from 'node:module';
const require = createRequire(new URL('../../tests/node/package.json', import.meta.url));
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2] || 6101);
const wss = new WebSocketServer({ port, host: '127.0.0.1', perMessageDeflate: false, backlog: 4096 });
let id = 0;
const subs = new Set();
wss.on('connection', (ws) => {
  ws.send(JSON.stringify({ event: 'pusher:connection_established',
    data: JSON.stringify({ socket_id: `1.${++id}`, activity_timeout: 120 }) }));
  ws.on('message', (buf) => {
    const m = JSON.parse(buf.toString());
    if (m.event === 'pusher:subscribe') {
      subs.add(ws);
      ws.send(JSON.stringify({ event: 'pusher_internal:subscription_succeeded', channel: m.data.channel, data: '{}' }));
    } else if (m.event === 'pusher:ping') {
      ws.send('{"event":"pusher:pong","data":"{}"}');
    } else if (!m.event.startsWith('pusher:')) {
      const frame = JSON.stringify({ event: m.event, channel: m.channel, data: m.data });
      for (const s of subs) if (s !== ws) s.send(frame);
    }
  });
  ws.on('close', () => subs.delete(ws));
  ws.on('error', () => subs.delete(ws));
});
wss.on('listening', () => console.log('ready'));
