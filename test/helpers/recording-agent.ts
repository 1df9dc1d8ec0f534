/**
 * An OpenAI-compatible endpoint for tests of the agentTurn executor that keeps a trace of every
 * execution: each server under test gets its own base URL (`urlFor("a")` -> .../a/v1), so every
 * chat-completion request is recorded with the server that sent it, the task's message, when it
 * arrived, and whether its answer was delivered. Each answer carries a unique id (`run-<n>`),
 * which the executor stores in the task's runIds: a done task names the one execution whose
 * result it kept.
 */
import { createServer, type ServerResponse } from "node:http";

export interface AgentRequest {
  /** The path segment naming the server that sent it ("a", "b", ...). */
  server: string;
  message: string;
  /** The id sent back as the completion's id (and stored in the task's runIds). */
  id: string;
  /** performance.timeOrigin + performance.now() when the request's body had arrived. */
  atMs: number;
  /** The answer was written to a live connection (false: its sender went away first, or held). */
  answered: boolean;
}

export interface RecordingAgent {
  urlFor(server: string): string;
  readonly requests: AgentRequest[];
  /** Called on each request as it arrives (before it is answered). */
  onRequest?: (req: AgentRequest) => void;
  /** Servers whose requests are held unanswered (until close). */
  readonly hold: Set<string>;
  close(): Promise<void>;
}

/** `delayMs`: how long each answer waits, so attempts stay in flight for a while. */
export async function startRecordingAgent(options: { delayMs?: number } = {}): Promise<RecordingAgent> {
  const delayMs = options.delayMs ?? 0;
  const held: ServerResponse[] = [];
  let n = 0;
  const agent: RecordingAgent = {
    urlFor: () => "",
    requests: [],
    hold: new Set(),
    close: async () => undefined,
  };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const server = (req.url ?? "").split("/")[1] ?? "";
      let message = "";
      try {
        message = (JSON.parse(Buffer.concat(chunks).toString("utf8")) as { messages: { content: string }[] }).messages[0]!.content;
      } catch {
        // recorded with an empty message: the test's assertions will show it
      }
      const rec: AgentRequest = { server, message, id: `run-${++n}`, atMs: performance.timeOrigin + performance.now(), answered: false };
      agent.requests.push(rec);
      agent.onRequest?.(rec);
      if (agent.hold.has(server)) {
        held.push(res);
        return;
      }
      const answer = () => {
        // A sender that died (SIGKILL) closed its connection: nothing is delivered to it.
        if (res.destroyed || req.socket.destroyed) return;
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ id: rec.id, choices: [{ message: { content: `ok ${message}` } }] }));
        rec.answered = true;
      };
      if (delayMs > 0) setTimeout(answer, delayMs);
      else answer();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  agent.urlFor = (name) => `http://127.0.0.1:${port}/${name}/v1`;
  agent.close = () => {
    for (const res of held) res.destroy();
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return agent;
}
