/**
 * A prototype of a lean `cara status` (used only by the cli benchmark, never shipped): the same
 * clipanion command line, the /health probe and GetStatus over Connect JSON with node:http, and a
 * few lines of output, but no @connectrpc/* and no @bufbuild/protobuf at runtime (the generated
 * types could still be used with `import type`, which costs nothing at runtime). It shows what a
 * CLI that imports only what a command needs can reach. Transpiled to plain .mjs by the harness.
 */
import http from "node:http";
import { readFileSync } from "node:fs";
import { Cli, Command, Option } from "clipanion";

function request(port: number, method: string, path: string, headers: Record<string, string>, body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

class LightStatus extends Command {
  static override paths = [["status"]];
  port = Option.String("--port");
  stateDir = Option.String("--state-dir");

  async execute(): Promise<number> {
    const port = Number(this.port);
    const token = readFileSync(`${this.stateDir}/auth/token`, "utf8").trim();
    const health = await request(port, "GET", "/health", { accept: "application/json" });
    JSON.parse(health.body);
    const res = await request(
      port,
      "POST",
      "/carapace.ops.v1.OpsService/GetStatus",
      { "content-type": "application/json", authorization: `Bearer ${token}` },
      "{}",
    );
    if (res.status !== 200) throw new Error(`GetStatus: HTTP ${res.status}`);
    const s = JSON.parse(res.body) as { version: string; overall: string; checks: { name: string; status: string; message: string }[] };
    this.context.stdout.write(`carapace ${s.version}: ${s.overall}\n`);
    for (const c of s.checks) this.context.stdout.write(`  ${c.status}  ${c.name}  ${c.message}\n`);
    return 0;
  }
}

const cli = new Cli({ binaryName: "cara-light" });
cli.register(LightStatus);
process.exitCode = await cli.run(process.argv.slice(2));
