// The bare HTTP bound's client (bench/rush/bare_http.py): CONNS keep-alive connections,
// each with one small JSON POST in flight, until killed.
//   node bare_http_client.mjs PORT CONNS
import http from 'node:http';

const [port, conns] = [Number(process.argv[2]), Number(process.argv[3])];
const agent = new http.Agent({ keepAlive: true, maxSockets: conns });
const body = JSON.stringify({ to: 'preparing', reason: null, note: 'x'.repeat(100) });

function one() {
  const req = http.request(
    {
      host: '127.0.0.1', port, path: '/v1/orders/ord_x/transitions', method: 'POST', agent,
      headers: { 'content-type': 'application/json', authorization: 'Basic eHg6eXk=' },
    },
    (res) => { res.resume(); res.on('end', one); },
  );
  req.on('error', () => setTimeout(one, 10));
  req.end(body);
}
for (let i = 0; i < conns; i += 1) one();
