// Validates Pusher webhooks with the Node `pusher` SDK's own WebHook class.
//   node validate_webhooks.mjs '{"appId":..,"key":..,"secret":..}' < requests.json
// stdin: [{"headers": {lower-case name: value}, "body": "<raw body>"}, ...]
// stdout: [{"valid": bool, "events": [...] | null, "time": ms | null}, ...]
import Pusher from 'pusher';

const cfg = JSON.parse(process.argv[2]);
const pusher = new Pusher({ appId: cfg.appId, key: cfg.key, secret: cfg.secret });
let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const out = JSON.parse(input).map((req) => {
    const hook = pusher.webhook({ headers: req.headers, rawBody: req.body });
    const valid = hook.isValid();
    return { valid, events: valid ? hook.getEvents() : null, time: valid ? hook.getTime().getTime() : null };
  });
  process.stdout.write(JSON.stringify(out));
});
