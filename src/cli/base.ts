import { resolve } from "node:path";
import { Command, Option, UsageError, type BaseContext } from "clipanion";
import { resolveStateDir } from "../state/paths.js";
import type { DescService } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { print, printJson } from "./output.js";
import type { RpcOptions } from "./rpc.js";
import { painter, type Painter } from "./terminal.js";
import { CliFailure, CliUsageError, parseTimeout, resolveTarget, type ConnectionFlags, type Target } from "./target.js";

/**
 * What a command may use of the world, so that one process can run the CLI many times (tests run
 * `main(args, context)` in-process): streams and environment come from here, never from `process`.
 */
export interface CaraContext extends BaseContext {
  /** Directory that relative paths are resolved against (default: the process's). */
  cwd?: string;
  /**
   * Stops a command that runs until interrupted (`cara logs --follow`). Without it, the command
   * stops on SIGINT or SIGTERM (and removes its handlers when it ends).
   */
  signal?: AbortSignal;
}

/**
 * Base of every cara command: `run()` returns the exit code; errors become one line on stderr
 * (`Error: ...`) with exit 1, usage errors exit 2. `--verbose` adds the stack trace.
 */
export abstract class CaraCommand extends Command<CaraContext> {
  verbose = Option.Boolean("--verbose", false, { description: "Print stack traces on errors" });

  abstract run(): Promise<number>;

  async execute(): Promise<number> {
    try {
      return await this.run();
    } catch (err) {
      const usage = err instanceof CliUsageError || err instanceof UsageError;
      const message = err instanceof Error ? err.message : String(err);
      if ((this as { json?: unknown }).json === true) {
        // Imported here: it loads the RPC libraries, which a command that fails offline need not load.
        const { jsonError } = await import("./json-error.js");
        const facts = err instanceof CliFailure && err.facts ? err.facts : { code: usage ? "usage" : "failed", details: {} };
        this.printJson(jsonError(message, facts));
        return usage ? 2 : 1;
      }
      this.context.stderr.write(`Error: ${message}\n`);
      if (usage) this.context.stderr.write(`Run 'cara ${this.commandPath().join(" ")} --help' for usage.\n`);
      if (this.verbose && err instanceof Error && err.stack && !(err instanceof CliFailure)) this.context.stderr.write(`${err.stack}\n`);
      return usage ? 2 : 1;
    }
  }

  private commandPath(): string[] {
    return (this.constructor as typeof Command).paths?.[0] ?? [];
  }

  /** Writes one JSON document to stdout. */
  protected printJson(value: unknown): void {
    printJson(this.context.stdout, value);
  }

  /** `value` as one JSON document on stdout when `json`, else the human text. */
  protected print(value: unknown, options: { json: boolean; human: () => string | readonly string[] }): void {
    print(this.context.stdout, value, options);
  }

  /** Colours for stdout (none unless it is a terminal and NO_COLOR is unset). */
  protected painter(): Painter {
    return painter(this.context.stdout, this.context.env);
  }

  /**
   * Aborts when the user interrupts: the context's `signal`, else SIGINT or SIGTERM. `dispose()`
   * removes the signal handlers (call it when the command ends).
   */
  protected interruption(): { signal: AbortSignal; dispose(): void } {
    if (this.context.signal) return { signal: this.context.signal, dispose: () => undefined };
    const stop = new AbortController();
    const onSignal = () => stop.abort();
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    return {
      signal: stop.signal,
      dispose: () => {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
      },
    };
  }

  /** A path the user gave, absolute (relative to the context's working directory). */
  protected resolvePath(p: string): string {
    return resolve(this.context.cwd ?? process.cwd(), p);
  }

  /** The state dir: the flag, else CARAPACE_STATE_DIR, else the default. */
  protected resolveStateDir(flag: string | undefined): string {
    return resolveStateDir(flag === undefined || flag.trim() === "" ? flag : this.resolvePath(flag), this.context.env);
  }
}

/** Options shared by every command that talks to a server. */
export abstract class ClientCommand extends CaraCommand {
  host = Option.String("--host", { description: "Server host (default 127.0.0.1)" });
  port = Option.String("--port,-p", { description: "Server port (default: CARAPACE_PORT, the port the local server recorded, the local config, or 18789)" });
  tls = Option.Boolean("--tls", false, { description: "Connect over TLS (https)" });
  tlsCa = Option.String("--tls-ca", { description: "PEM file of a CA to trust for --tls (e.g. a self-signed server)" });
  allowPlaintext = Option.Boolean("--allow-plaintext", false, { description: "Allow sending the token over plain HTTP to a non-loopback host" });
  stateDir = Option.String("--state-dir", { description: "Local state dir to read the token from (default: CARAPACE_STATE_DIR or ~/.config/carapace)" });
  timeout: string | undefined = Option.String("--timeout", { description: "How long to wait for the server to answer, e.g. 10s or 2m (default 30s)" });

  /** The --timeout given, in ms, else `defaultMs`. */
  protected timeoutMs(defaultMs: number): number {
    return this.timeout === undefined ? defaultMs : parseTimeout(this.timeout);
  }

  /** The verb as typed ("logs", "backup verify"), for advice that must not send the user back to it. */
  protected verb(): string {
    return ((this.constructor as typeof Command).paths?.[0] ?? []).join(" ");
  }

  protected connectionFlags(): ConnectionFlags {
    const flags: ConnectionFlags = { tls: this.tls, allowPlaintext: this.allowPlaintext };
    if (this.host !== undefined) flags.host = this.host;
    if (this.port !== undefined) flags.port = this.port;
    if (this.tlsCa !== undefined) flags.tlsCa = this.tlsCa;
    if (this.stateDir !== undefined) flags.stateDir = this.resolveStateDir(this.stateDir);
    return flags;
  }

  /** Where and how to reach the server (and its token), from the flags and the environment. */
  protected target(): Promise<Target> {
    return resolveTarget(this.connectionFlags(), this.context.stderr, this.context.env, this.context.cwd);
  }

  /**
   * Runs `fn` with a client of `service` on the target (calls time out after `timeoutMs`); a
   * failure becomes one line for the user: what failed and what to do next.
   */
  protected async withClient<S extends DescService, T>(
    service: S,
    timeoutMs: number,
    fn: (client: Client<S>, target: Target) => Promise<T>,
    options: RpcOptions = {},
  ): Promise<T> {
    // Imported here, so that a command that makes no call does not load the RPC libraries.
    const [{ describeError, rpcClient }, { errorFacts }] = await Promise.all([import("./rpc.js"), import("./json-error.js")]);
    const target = await this.target();
    const client = await rpcClient(service, target, timeoutMs, options);
    try {
      return await fn(client, target);
    } catch (err) {
      if (err instanceof CliFailure || err instanceof CliUsageError) throw err;
      throw new CliFailure(describeError(err, target, timeoutMs, this.verb()), errorFacts(err));
    }
  }
}
