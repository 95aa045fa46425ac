// A Doshii partner app on ordercast: the unmodified doshii-partner-node-sdk, two URLs changed.
// Usage: node tests/node/examples/doshii_partner.mjs   (Ctrl-C to stop)
import sdk from 'doshii-partner-node-sdk';
import jwt from 'jsonwebtoken';

const { default: Doshii, WebsocketEvents } = sdk; // CommonJS: the class is exports.default

const { OC_URL, OC_WS, OC_KEY, OC_SECRET, OC_LOCATION } = process.env;
// The socket's `auth` is a JWT signed like every REST call; the SDK then appends
// base64(clientId), which lands in the `client` parameter that ordercast ignores.
const socketAuth = jwt.sign({ clientId: OC_KEY, timestamp: Math.round(Date.now() / 1000) }, OC_SECRET);
const doshii = new Doshii(OC_KEY, OC_SECRET, {
  apiUrlOverride: `${OC_URL}/partner/v3`,
  websocketUrlOverride: `${OC_WS}/app/socket?auth=${socketAuth}&client=`,
});

let socketUp;
const connected = new Promise((resolve) => { socketUp = resolve; });
doshii.subscribeToWebsockeEvents(
  [WebsocketEvents.PONG, WebsocketEvents.ORDER_CREATED, WebsocketEvents.ORDER_UPDATED],
  (event, data) => {
    if (event !== WebsocketEvents.PONG) return console.log(event, data.id, data.status);
    console.log('pong');
    socketUp();
  },
);
await connected; // the first pong: from now on every change of our orders is pushed

const order = await doshii.order.createOrder(OC_LOCATION, {
  order: {
    type: 'pickup',
    status: 'pending',
    externalOrderRef: `web-${Date.now()}`,
    items: [{ posId: 'burger', name: 'Burger', quantity: 1, unitPrice: '1100', options: [], surcounts: [] }],
    surcounts: [],
  },
  consumer: { name: 'Tony T', phone: '0400 000 000' },
});
console.log('created', order.id, order.status, order.version);

const accepted = await doshii.order.update(OC_LOCATION, order.id, {
  status: 'accepted',
  version: order.version,
});
console.log('accepted', accepted.id, accepted.status, accepted.version);
