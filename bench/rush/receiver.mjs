// Dinner-rush webhook receiver: answers every POST with 204 at once and records when it
// arrived, for which endpoint (the path: /wh/{endpoint index}), which order (the first
// `ord_…` id in the body) and its `webhook-id`. `GET /__dump` returns the log as JSON.
// Times are epoch milliseconds on the clock the load generator uses.
//   node receiver.mjs PORT
import http from 'node:http';
import { performance } from 'node:perf_hooks';

const now = () => performance.timeOrigin + performance.now();
const t = [];
const endpoint = [];
const order = [];
const id = [];
const ORDER = /"(ord_[0-9A-Za-z]+)"/;

http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/__dump') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ t, endpoint, order, id }));
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const at = now();
    res.writeHead(204);
    res.end();
    const m = ORDER.exec(Buffer.concat(chunks).toString());
    t.push(at);
    endpoint.push(Number(req.url.split('/')[2]));
    order.push(m ? m[1] : null);
    id.push(req.headers['webhook-id'] || null);
  });
}).listen(Number(process.argv[2]), '127.0.0.1');
