import type { AgentTurnPayload, SystemEventPayload, TaskRecord } from "./model.js";
import type { ExecutionContext, Executor, Outcome } from "./worker.js";
import { readCapped } from "../read-capped.js";

export interface RecordedEvent {
  timeMs: number;
  text: string;
  taskId: string;
}

/** The latest system events, newest first (bounded), shown by `cara status`. */
export class RecentEvents {
  private readonly items: RecordedEvent[] = [];
  constructor(private readonly limit = 20) {}
  add(event: RecordedEvent): void {
    this.items.unshift(event);
    if (this.items.length > this.limit) this.items.length = this.limit;
  }
  list(): readonly RecordedEvent[] {
    return this.items;
  }
}

/** systemEvent {text}: records the event (a log line and the recent-events list) -> done. */
export function systemEventExecutor(events: RecentEvents, log: (task: TaskRecord, text: string) => void): Executor {
  return async ({ task }) => {
    const { text } = task.payload as SystemEventPayload;
    events.add({ timeMs: Date.now(), text, taskId: task.id });
    log(task, text);
    return { kind: "done" };
  };
}

export interface AgentConfig {
  /** OpenAI-compatible API base, e.g. https://api.openai.com/v1 (POST {baseUrl}/chat/completions). */
  baseUrl?: string;
  model?: string;
  apiKey?: string;
}

export const NO_PROVIDER = "no LLM provider configured";
/** What a task blocked for want of a provider says: every setting that is missing, and the way on. */
export const NO_PROVIDER_REASON = `${NO_PROVIDER}: set agent.baseUrl and agent.model in config.json and the key in CARAPACE_AGENT_API_KEY, then resume the task`;
const MAX_REPLY_BYTES = 1024 * 1024;

/**
 * agentTurn {message, model?, timeoutSeconds?}: one chat completion against the configured
 * OpenAI-compatible endpoint; the reply text is stored on the task -> done. No endpoint: blocked
 * (config_missing) at once, naming the settings (the original Rust cara retried every 60 s until
 * the attempts ran out, which only delayed the same answer; an operator resumes it after
 * configuring a provider).
 * 5xx, 429, network errors and timeouts are retryable; 400/401/403/404 are configuration
 * problems -> blocked (no retry storm).
 */
export function agentTurnExecutor(config: () => AgentConfig): Executor {
  return async (ctx: ExecutionContext): Promise<Outcome> => {
    const { task, signal } = ctx;
    const payload = task.payload as AgentTurnPayload;
    const agent = config();
    if (payload.route !== undefined && payload.model !== undefined) {
      return { kind: "failed", error: "cannot set both `route` and `model` in the same task" };
    }
    if (!agent.baseUrl) return { kind: "blocked", reason: NO_PROVIDER_REASON, category: "config_missing" };
    const model = payload.model ?? agent.model;
    if (!model) return { kind: "blocked", reason: "agent model is not configured (set agent.model in config.json)", category: "config_missing" };
    const url = `${agent.baseUrl.replace(/\/+$/, "")}/chat/completions`;
    const headers: Record<string, string> = { "content-type": "application/json", accept: "application/json" };
    if (agent.apiKey) headers.authorization = `Bearer ${agent.apiKey}`;
    let res: Response;
    try {
      res = await fetch(url, {
        method: "POST",
        headers,
        body: JSON.stringify({ model, messages: [{ role: "user", content: payload.message }] }),
        signal,
      });
    } catch (err) {
      if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new Error("attempt aborted");
      return { kind: "retry", error: `LLM endpoint unreachable: ${describeFetchError(err)}` };
    }
    // Node's web streams are async-iterable; the DOM typings (the browser tests type-check this file) do not say so.
    const body = await readCapped(res.body as AsyncIterable<Uint8Array> | null, MAX_REPLY_BYTES, { over: "truncate", signal });
    if (res.status === 429 || res.status >= 500) {
      const retryAfter = Number(res.headers.get("retry-after"));
      const outcome: Outcome = { kind: "retry", error: `LLM endpoint answered HTTP ${res.status}` };
      if (Number.isFinite(retryAfter) && retryAfter > 0) outcome.delayMs = Math.min(retryAfter, 3600) * 1000;
      return outcome;
    }
    if (res.status === 401 || res.status === 403) {
      return { kind: "blocked", reason: `LLM endpoint refused the credentials (HTTP ${res.status}); check CARAPACE_AGENT_API_KEY`, category: "config_missing" };
    }
    if (res.status === 404) {
      return {
        kind: "blocked",
        reason: `LLM endpoint does not know model '${model}' or the path ${new URL(url).pathname} (HTTP 404); check agent.baseUrl and agent.model`,
        category: "config_missing",
      };
    }
    if (res.status < 200 || res.status > 299) {
      return { kind: "failed", error: `LLM endpoint answered HTTP ${res.status}: ${body.slice(0, 300)}` };
    }
    let reply: string | undefined;
    try {
      const json = JSON.parse(body) as { choices?: { message?: { content?: unknown } }[]; id?: unknown };
      const content = json.choices?.[0]?.message?.content;
      if (typeof content === "string") reply = content;
      return reply === undefined
        ? { kind: "failed", error: "LLM endpoint answered without choices[0].message.content" }
        : { kind: "done", result: reply, turns: 1, ...(typeof json.id === "string" ? { runId: json.id } : {}) };
    } catch {
      return { kind: "failed", error: "LLM endpoint answered with invalid JSON" };
    }
  };
}

function describeFetchError(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (err as Error).message;
}
