import { Command, Option } from "clipanion";
import { CaraCommand } from "./base.js";
import { CliUsageError } from "./target.js";

export class StartCommand extends CaraCommand {
  static override paths = [Command.Default, ["start"]];
  static override usage = Command.Usage({
    description: "Start the cara server (the default when no command is given)",
    details: `
      Serves the Ops, Tasks, Backup and Update APIs plus \`GET /health\` and \`GET /health/ready\` on one
      port: HTTP/1.1 and HTTP/2 (h2c) in plaintext, or h2 and HTTP/1.1 over TLS when a certificate and key
      are given. Connect, gRPC and gRPC-Web clients are all accepted.

      Every RPC needs \`Authorization: Bearer <token>\`. The token is \`CARAPACE_GATEWAY_TOKEN\`, else one
      generated on first start into \`<state>/auth/token\` (mode 0600), where a local \`cara\` finds it.

      Settings come from flags, then environment (\`CARAPACE_PORT\`, \`CARAPACE_BIND\`, \`CARAPACE_TLS_CERT\`,
      \`CARAPACE_TLS_KEY\`, \`CARAPACE_LOG_LEVEL\`), then \`<state>/config.json\`, then defaults.
      SIGTERM or Ctrl-C stops it gracefully: health turns NOT_SERVING, in-flight calls finish (10 s at most).
    `,
    examples: [
      ["Start on 127.0.0.1:18789 with the default state dir", "cara start"],
      ["Use another port and state dir", "cara start --port 18800 --state-dir /srv/carapace"],
      ["Listen on all interfaces with TLS", "cara start --bind 0.0.0.0 --tls-cert cert.pem --tls-key key.pem"],
    ],
  });

  port = Option.String("--port,-p", { description: "Port to listen on (default 18789; 0 picks a free one)" });
  bind = Option.String("--bind", { description: "Address to listen on (default 127.0.0.1)" });
  stateDir = Option.String("--state-dir", { description: "State directory (default: CARAPACE_STATE_DIR or ~/.config/carapace)" });
  logLevel = Option.String("--log-level", { description: "trace, debug, info, warn, error or fatal (default info)" });
  tlsCert = Option.String("--tls-cert", { description: "PEM certificate file: serve TLS (h2 + HTTP/1.1)" });
  tlsKey = Option.String("--tls-key", { description: "PEM private key file for --tls-cert" });
  allowPlaintext = Option.Boolean("--allow-plaintext", { description: "Allow a non-loopback --bind without TLS (e.g. behind a TLS proxy)" });

  async run(): Promise<number> {
    const flags: import("../server/options.js").StartFlags = {};
    if (this.port !== undefined) {
      if (!/^\d+$/.test(this.port) || Number(this.port) > 65535) throw new CliUsageError(`--port must be a port number 0..65535 (got '${this.port}')`);
      flags.port = Number(this.port);
    }
    if (this.bind !== undefined) flags.bind = this.bind;
    if (this.stateDir !== undefined) flags.stateDir = this.stateDir;
    if (this.logLevel !== undefined) flags.logLevel = this.logLevel;
    if (this.tlsCert !== undefined) flags.tlsCert = this.tlsCert;
    if (this.tlsKey !== undefined) flags.tlsKey = this.tlsKey;
    if (this.allowPlaintext !== undefined) flags.allowPlaintext = this.allowPlaintext;

    // Before the server's modules load: a small young generation and a slowly growing old one.
    const { limitHeapGrowth } = await import("../server/heap-limits.js");
    limitHeapGrowth(process.execArgv, this.context.env.NODE_OPTIONS);
    const { startServer } = await import("../server/server.js");
    let restartWith: ((launcher: string) => void) | undefined;
    const restartRequested = new Promise<string>((resolve) => (restartWith = resolve));
    // On a terminal: a banner and log lines as text; elsewhere JSON lines (for log collectors).
    const human = (this.context.stdout as { isTTY?: boolean }).isTTY === true && this.context.env.CARAPACE_LOG_FORMAT !== "json";
    const banner = human ? await import("./start-banner.js") : undefined;
    const paint = this.painter();
    const server = await startServer(flags, {
      env: this.context.env,
      onRestartRequested: (launcher) => restartWith?.(launcher),
      ...(banner ? { logDestination: banner.humanLogSink(this.context.stdout, paint) as unknown as import("pino").DestinationStream } : {}),
    });
    if (banner) {
      const facts = {
        version: server.identity.version,
        url: server.url,
        stateDir: server.identity.stateDir,
        tokenSource: server.identity.tokenSource,
        ...(server.consoleUrl ? { consoleUrl: server.consoleUrl } : {}),
      };
      this.context.stdout.write(`${banner.startBanner(facts, paint).join("\n")}\n`);
    }
    const stop = await Promise.race([
      new Promise<{ signal: NodeJS.Signals }>((resolve) => {
        // In-process callers (tests) stop it through the context's signal.
        this.context.signal?.addEventListener("abort", () => resolve({ signal: "SIGTERM" }), { once: true });
        process.once("SIGTERM", () => resolve({ signal: "SIGTERM" }));
        process.once("SIGINT", () => resolve({ signal: "SIGINT" }));
        // Under the install's launcher: if the launcher dies (even by kill -9), stop too rather
        // than linger unsupervised holding the state dir.
        if (this.context.env.CARA_LAUNCHER) {
          const parent = Number(this.context.env.CARA_LAUNCHER_PID) || process.ppid;
          setInterval(() => {
            if (process.ppid !== parent) {
              server.logger.warn({ launcherPid: parent }, "the launcher is gone; shutting down");
              resolve({ signal: "SIGTERM" });
            }
          }, 1000).unref();
        }
      }),
      restartRequested.then((launcher) => ({ launcher })),
    ]);
    // A stop signal during a restart's drain turns the restart into a stop.
    let stopRequested = false;
    if ("launcher" in stop) {
      const note = () => void (stopRequested = true);
      process.on("SIGTERM", note).on("SIGINT", note);
      return this.restart(server, stop.launcher, () => stopRequested);
    }
    const signal = stop.signal;
    if (this.context.env.CARA_LAUNCHER) {
      // Under the launcher the same stop can arrive twice (from a supervisor to the whole group,
      // and forwarded by the launcher): repeats are the same request, not "exit now".
      process.on("SIGTERM", () => {}).on("SIGINT", () => {});
    } else {
      process.once(signal === "SIGINT" ? "SIGINT" : "SIGTERM", () => {
        this.context.stderr.write("Second signal received: exiting now without waiting for in-flight calls.\n");
        process.exit(1);
      });
    }
    await server.shutdown(signal);
    await new Promise<void>((resolve) => server.logger.flush(() => resolve()));
    return 0;
  }

  /**
   * Restart after an update or rollback: drain and stop this server (releasing the state lock).
   * Under the install's launcher (which sets CARA_LAUNCHER), exit with 75 and the launcher starts
   * the now-current version. Started some other way, run the launcher as a child that inherits
   * stdio; this process stays as a thin parent, forwarding signals and its exit code.
   */
  private async restart(
    server: Awaited<ReturnType<typeof import("../server/server.js").startServer>>,
    launcher: string,
    stopRequested: () => boolean,
  ): Promise<number> {
    await server.shutdown("restarting on the installed version");
    await new Promise<void>((resolve) => server.logger.flush(() => resolve()));
    if (stopRequested()) return 0;
    if (this.context.env.CARA_LAUNCHER) return 75;
    const { spawn } = await import("node:child_process");
    const { runningAsExecutable } = await import("../executable-form.js");
    // A script launcher runs on this Node; an executable install's launcher is itself an executable.
    const [file, args] = runningAsExecutable() ? [launcher, process.argv.slice(2)] : [process.execPath, [launcher, ...process.argv.slice(2)]];
    const child = spawn(file, args, { stdio: "inherit" });
    for (const sig of ["SIGTERM", "SIGINT"] as const) process.on(sig, () => child.kill(sig));
    return new Promise<number>((resolve) => child.once("exit", (c, s) => resolve(c ?? (s ? 1 : 0))));
  }
}
