// LiveKit's Node server SDK (livekit-server-sdk), unchanged, against the dispatcher: the
// RoomService participant and metadata calls and the SIP inbound-trunk calls. Prints one
// JSON object with what each call returned (or the error code it raised).
import { RoomServiceClient, SipClient } from 'livekit-server-sdk';

const [url, key, secret, room] = process.argv.slice(2);
const rooms = new RoomServiceClient(url, key, secret);
const sip = new SipClient(url, key, secret);
const out = {};

async function step(name, call) {
  try {
    out[name] = await call();
  } catch (err) {
    out[name] = { error: err.code ?? String(err), status: err.status };
  }
}

await step('participants', async () => (await rooms.listParticipants(room)).map((p) => p.identity));
await step('removed', async () => (await rooms.removeParticipant(room, 'bob'), true));
await step('after', async () => (await rooms.listParticipants(room)).map((p) => p.identity));
await step('metadata', async () => (await rooms.updateRoomMetadata(room, 'from-node')).metadata);
await step('trunk', async () => (await sip.createSipInboundTrunk('node', ['+15550004444'])).sipTrunkId);
await step('trunks', async () => (await sip.listSipInboundTrunk()).map((t) => t.sipTrunkId));
await step('deleted', async () => (await sip.deleteSipTrunk(out.trunk)).sipTrunkId);
await step('mute', async () => rooms.mutePublishedTrack(room, 'bob', 'TR_x', true));
console.log(JSON.stringify(out));
