import { Command, Option, UsageError } from "clipanion";
import { CliFailure, CliUsageError, type ConnectionFlags } from "./target.js";

/**
 * Base of every cara command: `run()` returns the exit code; errors become one line on stderr
 * (`Error: ...`) with exit 1, usage errors exit 2. `--verbose` adds the stack trace.
 */
export abstract class CaraCommand extends Command {
  verbose = Option.Boolean("--verbose", false, { description: "Print stack traces on errors" });

  abstract run(): Promise<number>;

  async execute(): Promise<number> {
    try {
      return await this.run();
    } catch (err) {
      const usage = err instanceof CliUsageError || err instanceof UsageError;
      const message = err instanceof Error ? err.message : String(err);
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
    this.context.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  }
}

/** Options shared by every command that talks to a server. */
export abstract class ClientCommand extends CaraCommand {
  host = Option.String("--host", { description: "Server host (default 127.0.0.1)" });
  port = Option.String("--port,-p", { description: "Server port (default: CARAPACE_PORT, the local config, or 18789)" });
  tls = Option.Boolean("--tls", false, { description: "Connect over TLS (https)" });
  tlsCa = Option.String("--tls-ca", { description: "PEM file of a CA to trust for --tls (e.g. a self-signed server)" });
  allowPlaintext = Option.Boolean("--allow-plaintext", false, { description: "Allow sending the token over plain HTTP to a non-loopback host" });
  stateDir = Option.String("--state-dir", { description: "Local state dir to read the token from (default: CARAPACE_STATE_DIR or ~/.config/carapace)" });

  protected connectionFlags(): ConnectionFlags {
    const flags: ConnectionFlags = { tls: this.tls, allowPlaintext: this.allowPlaintext };
    if (this.host !== undefined) flags.host = this.host;
    if (this.port !== undefined) flags.port = this.port;
    if (this.tlsCa !== undefined) flags.tlsCa = this.tlsCa;
    if (this.stateDir !== undefined) flags.stateDir = this.stateDir;
    return flags;
  }
}
