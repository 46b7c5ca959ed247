// The reference docs' agent, written with LiveKit's Node SDK (@livekit/agents) and started
// with its own command (`node agent.mjs start`), pointed at the dispatcher by LIVEKIT_URL.
// For the tests it appends each job's start and end to AGENT_RECORD (JSON lines); a job's
// metadata says how it behaves: `hold` stays until terminated, anything else ends at once.
import { appendFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ServerOptions, cli, defineAgent } from '@livekit/agents';

function record(event, job) {
  const line = {
    event,
    job: job.id,
    dispatch: job.dispatchId,
    metadata: job.metadata,
    room: job.room?.name ?? '',
    agent_name: job.agentName,
    pid: process.pid,
    t_ns: (BigInt(Date.now()) * 1000000n).toString(),
  };
  appendFileSync(process.env.AGENT_RECORD, JSON.stringify(line) + '\n');
}

export default defineAgent({
  entry: async (ctx) => {
    record('started', ctx.job);
    ctx.addShutdownCallback(async () => record('ended', ctx.job));
    if (ctx.job.metadata !== 'hold') {
      ctx.shutdown('done'); // a held job lives on (as one in its room would) until terminated
    }
  },
});

cli.runApp(
  new ServerOptions({
    agent: fileURLToPath(import.meta.url),
    agentName: process.env.AGENT_NAME ?? 'test-agent',
    port: Number(process.env.AGENT_HEALTH_PORT ?? 8081),
  }),
);
