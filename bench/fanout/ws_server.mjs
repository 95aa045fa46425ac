// Baseline: a plain Node `ws` broadcast server speaking just enough Pusher (public channel).
import { WebSocketServer } from 'ws';
const port = Number(process.argv[2] || 6101);
const wss = new WebSocketServer({ port, perMessageDeflate: false });
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
    } else if (m.event === 'bench') {
      const frame = JSON.stringify({ event: 'bench', channel: m.channel, data: m.data });
      for (const s of subs) if (s !== ws) s.send(frame);
    }
  });
  ws.on('close', () => subs.delete(ws));
});
console.log('ready');
