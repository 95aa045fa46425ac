// A kitchen screen: the demo venue's open orders over STOMP, logged in with an app key.
// Usage: node tests/node/examples/kds.mjs
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';

const { OC_WS, OC_KEY, OC_SECRET, OC_TENANT, OC_LOCATION } = process.env;
const client = new Client({
  webSocketFactory: () => new WebSocket(`${OC_WS}/ws`, ['v12.stomp', 'v11.stomp']),
  connectHeaders: { login: OC_KEY, passcode: OC_SECRET },
  onConnect: () => {
    client.subscribe(`/kds/${OC_TENANT}/${OC_LOCATION}`, (message) => {
      const order = JSON.parse(message.body);
      console.log(message.headers['event-type'], order.id, order.status);
    });
    console.log('subscribed');
  },
  onStompError: (frame) => console.error(frame.headers.message, frame.body),
});
client.activate();
