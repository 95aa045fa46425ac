// Follow one order live, as a customer app does: pusher-js on the order's private channel,
// authorized with the customer's access token through the Open Dining auth endpoint.
// Usage: ORDER=ord_... TOKEN=eyJ... node tests/node/examples/follow_order.mjs
import Pusher from 'pusher-js';

const { OC_URL, OC_WS, OC_KEY, ORDER, TOKEN } = process.env;
const gateway = new URL(OC_WS);
const pusher = new Pusher(OC_KEY, {
  wsHost: gateway.hostname,
  wsPort: Number(gateway.port),
  forceTLS: false,
  enabledTransports: ['ws'],
  disableStats: true,
  cluster: 'ordercast',
  channelAuthorization: {
    transport: 'ajax',
    endpoint: `${OC_URL}/api/v1/pusher/auth?key=${OC_KEY}&access_token=${TOKEN}`,
  },
});

const channel = pusher.subscribe(`private-o-${ORDER}`);
channel.bind('pusher:subscription_succeeded', () => console.log('subscribed'));
channel.bind_global((event, data) => {
  if (!event.startsWith('pusher')) console.log(event, JSON.stringify(data));
});
