import { Command, Option } from "clipanion";
import { statePaths } from "../state/paths.js";
import { VERSION } from "../package-info.js";
import { CaraCommand } from "./base.js";
import { bytes } from "./output.js";
import { CliFailure, CliUsageError } from "./target.js";
import { runningAsExecutable } from "../executable-form.js";

export class InstallCommand extends CaraCommand {
  static override paths = [["install"]];
  static override usage = Command.Usage({
    category: "Update",
    description: "Create a managed install (the production layout that `cara update` can update)",
    details: `
      Downloads a release, verifies it exactly like \`cara update\` (Sigstore bundle with the pinned trusted root,
      exact identity and issuer, SHA256SUMS.txt) and installs it into DIR:

      - \`DIR/versions/<version>/\`: the release
      - \`DIR/current\`: symlink to the version that runs
      - \`DIR/bin/cara\`: the launcher; put DIR/bin on PATH and run \`cara start\`

      The form follows what runs the command: the platform executable (\`cara-x86_64-linux\`...) installs
      this host's executable (\`versions/<version>/cara\`, no Node needed); \`node bin/cara.js\` (or npm's
      \`cara\`) installs the tarball \`carapace-<version>.tar.gz\`, run by that Node. \`--form\` picks one
      explicitly (the tarball form needs Node, so an executable cannot install it).

      Running it again with another --version adds that version and makes it current.
      Release source, identity, issuer and trusted root come from the \`update\` section of
      <state>/config.json (--state-dir), or the flags below.
    `,
    examples: [
      ["Install the newest stable release into /opt/carapace", "cara install --dir /opt/carapace"],
      ["Install a pinned version", "cara install --dir /opt/carapace --version 0.9.1"],
    ],
  });

  dir = Option.String("--dir", { required: true, description: "Install directory (created if missing)" });
  version = Option.String("--version", { description: "Version to install (default: the newest on the channel)" });
  channel = Option.String("--channel", { description: "stable (default) or beta" });
  releasesUrl = Option.String("--releases-url", { description: "Releases API base (default: config update.releasesUrl or the project's GitHub repo)" });
  trustedRoot = Option.String("--trusted-root", { description: "Sigstore trusted_root.json (default: config update.trustedRoot or the pinned one)" });
  stateDir = Option.String("--state-dir", { description: "State dir whose config.json `update` section to use" });
  form = Option.String("--form", { description: "executable or tarball (default: executable when run as the platform executable, else tarball)" });
  json = Option.Boolean("--json", false, { description: "Print one JSON document" });

  async run(): Promise<number> {
    if (this.form !== undefined && this.form !== "executable" && this.form !== "tarball")
      throw new CliUsageError(`--form must be one of executable, tarball (got '${this.form}')`);
    const executable = runningAsExecutable();
    const form = this.form ?? (executable ? "executable" : "tarball");
    // The tarball's launcher is a script for the host's Node, which an executable does not carry.
    if (form === "tarball" && executable)
      throw new CliUsageError("--form tarball needs Node: run `cara install` from the tarball with the host's Node (node bin/cara.js install ...)");
    const { loadConfig } = await import("../state/config.js");
    const { resolveUpdateSettings } = await import("../update/settings.js");
    const { installRelease } = await import("../update/install-release.js");
    const config = await loadConfig(statePaths(this.resolveStateDir(this.stateDir)).config);
    const settings = resolveUpdateSettings(config);
    if (this.releasesUrl !== undefined) settings.releasesUrl = this.releasesUrl.replace(/\/+$/, "");
    if (this.trustedRoot !== undefined) settings.trustedRootPath = this.resolvePath(this.trustedRoot);
    const tty = (this.context.stderr as { isTTY?: boolean }).isTTY === true && !this.json;
    try {
      const r = await installRelease({
        installDir: this.resolvePath(this.dir),
        ...(this.version !== undefined ? { version: this.version } : {}),
        ...(this.channel !== undefined ? { channel: this.channel } : {}),
        settings,
        form,
        userAgent: `cara/${VERSION}`,
        onProgress: (message, done, total) => {
          if (!tty) return;
          this.context.stderr.write(`\r\u001b[2K${message}${done !== undefined ? ` ${bytes(done)}${total ? ` / ${bytes(total)}` : ""}` : ""}`);
        },
      });
      if (tty) this.context.stderr.write("\n");
      if (this.json) this.printJson(r);
      else {
        const out = this.context.stdout;
        out.write(`Installed cara v${r.version} into ${r.installDir}${r.previous ? ` (was v${r.previous})` : ""}.\n`);
        out.write(`  Form:              ${r.form} (${r.asset})\n`);
        out.write(`  Version dir:       ${r.installPath}\n`);
        out.write(`  SHA-256:           ${r.sha256}\n`);
        out.write(`  Signing identity:  ${r.signingIdentity}\n`);
        out.write(`  Trusted root:      ${r.trustedRoot}${r.trustRefreshError !== undefined ? ` (TUF refresh failed: ${r.trustRefreshError})` : ""}\n`);
        out.write(`  Launcher:          ${r.launcher}\n`);
        out.write(`Start it with: ${r.launcher} start   (add ${r.installDir}/bin to PATH)\n`);
      }
      return 0;
    } catch (err) {
      if (tty) this.context.stderr.write("\n");
      throw new CliFailure(`install failed: ${(err as Error).message}`);
    }
  }
}
