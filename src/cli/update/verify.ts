import { Command, Option } from "clipanion";
import { CaraCommand } from "../base.js";
import { CliFailure, CliUsageError } from "../target.js";
import { jsonError } from "../json-error.js";

export class UpdateVerifyCommand extends CaraCommand {
  static override paths = [["update", "verify"]];
  static override usage = Command.Usage({
    category: "Update",
    description: "Verify a release artifact's Sigstore bundle or build provenance offline (validate before rollout)",
    details: `
      Checks that the bundle is a valid Sigstore signature over the artifact (or over \`sha256:<hex>\`), made by
      a certificate from the trusted root with exactly the given identity and OIDC issuer, with a verified
      transparency-log entry. Uses the trusted root pinned with cara unless --trusted-root is given (\`cara
      update --status\` names the root the server verifies with, e.g. one refreshed through TUF); needs no
      network. Flags follow \`cosign verify-blob\`. An identity regexp is always anchored (^...$).

      The bundle may also be build provenance (\`provenance.sigstore.json\` of a release, made by GitHub artifact
      attestations): an in-toto statement in a DSSE envelope, verified with the same identity, issuer and
      transparency-log rules, accepted when one of its subjects has the artifact's SHA-256 and its predicate type
      is allowed (SLSA provenance v1 unless --predicate-type is given); the builder, source repository and ref it
      names are shown. \`cara update\` itself verifies the artifact's signature, not its provenance.

      Exit 0 when verified, 1 when not (with the reason), 2 for usage errors.
    `,
    examples: [
      [
        "Verify a downloaded release",
        "cara update verify carapace-0.9.1.tar.gz --bundle carapace-0.9.1.tar.gz.bundle --certificate-identity https://github.com/OWNER/REPO/.github/workflows/release.yml@refs/tags/v0.9.1 --certificate-oidc-issuer https://token.actions.githubusercontent.com",
      ],
      [
        "Verify by digest, any v* tag of the workflow",
        "cara update verify sha256:acc4... --bundle SHA256SUMS.txt.bundle --certificate-identity-regexp 'https://github\\.com/OWNER/REPO/\\.github/workflows/release\\.yml@refs/tags/v.*' --certificate-oidc-issuer https://token.actions.githubusercontent.com",
      ],
      [
        "Verify a release asset's build provenance",
        "cara update verify cara-x86_64-linux --bundle provenance.sigstore.json --certificate-identity https://github.com/OWNER/REPO/.github/workflows/release.yml@refs/tags/v0.9.1 --certificate-oidc-issuer https://token.actions.githubusercontent.com",
      ],
    ],
  });

  artifact = Option.String({ name: "artifact|sha256:<hex>" });
  bundle = Option.String("--bundle", { required: true, description: "The Sigstore bundle (.bundle / .sigstore.json)" });
  identity = Option.String("--certificate-identity", { description: "Exact certificate identity (SAN URI)" });
  identityRegexp = Option.String("--certificate-identity-regexp", { description: "Identity pattern (anchored)" });
  issuer = Option.String("--certificate-oidc-issuer", { required: true, description: "Exact OIDC issuer, e.g. https://token.actions.githubusercontent.com" });
  predicateTypes = Option.Array("--predicate-type", {
    description: "A predicate type a provenance bundle may have (repeatable; default https://slsa.dev/provenance/v1)",
  });
  trustedRoot = Option.String("--trusted-root", { description: "A Sigstore trusted_root.json (default: the one pinned with cara)" });
  json = Option.Boolean("--json", false, { description: "Print one JSON document" });

  async run(): Promise<number> {
    if ((this.identity === undefined) === (this.identityRegexp === undefined)) {
      throw new CliUsageError("pass exactly one of --certificate-identity and --certificate-identity-regexp");
    }
    if (this.identityRegexp !== undefined) {
      try {
        new RegExp(this.identityRegexp);
      } catch (err) {
        throw new CliUsageError(`--certificate-identity-regexp is not a valid regular expression: ${(err as Error).message}`);
      }
    }
    for (const t of this.predicateTypes ?? []) {
      if (!/^[a-z][a-z0-9+.-]*:\S+$/i.test(t)) throw new CliUsageError(`--predicate-type '${t}' is not a URI (e.g. https://slsa.dev/provenance/v1)`);
    }
    const { loadTrustedRoot, parseDigestArgument, sha256File, verifyBundle } = await import("../../update/sigstore-bundle.js");
    const { DEFAULT_PREDICATE_TYPES } = await import("../../update/provenance-statement.js");
    const { readFile } = await import("node:fs/promises");
    let digest = parseDigestArgument(this.artifact);
    if (digest === undefined) {
      if (this.artifact.startsWith("sha256:")) throw new CliUsageError(`'${this.artifact}' is not sha256:<64 hex digits>`);
      digest = await sha256File(this.resolvePath(this.artifact)).catch((err: Error) => {
        throw new CliFailure(`cannot read artifact ${this.artifact}: ${err.message}`);
      });
    }
    const bundle = await readFile(this.resolvePath(this.bundle)).catch((err: Error) => {
      throw new CliFailure(`cannot read bundle ${this.bundle}: ${err.message}`);
    });
    const root = await loadTrustedRoot(this.trustedRoot === undefined ? undefined : this.resolvePath(this.trustedRoot)).catch((err: Error) => {
      throw new CliFailure(err.message);
    });
    const identity = this.identity !== undefined ? { exact: this.identity } : { regexp: this.identityRegexp! };
    try {
      const attestation = { predicateTypes: this.predicateTypes ?? DEFAULT_PREDICATE_TYPES };
      const v = await verifyBundle({ bundle, digest, identity, issuer: this.issuer, trustedRoot: root, attestation });
      if (this.json) this.printJson({ verified: true, ...v, trustedRoot: root.path });
      else {
        const out = this.context.stdout;
        out.write("Verified OK\n");
        out.write(`  Artifact SHA-256:  ${v.digest}\n`);
        out.write(`  Identity:          ${v.identity}\n`);
        out.write(`  Issuer:            ${v.issuer}\n`);
        const p = v.provenance;
        if (p) {
          out.write(`  Provenance:        ${p.predicateType} (subject ${p.subject || "(unnamed)"})\n`);
          if (p.builderId !== undefined) out.write(`  Builder:           ${p.builderId}\n`);
          if (p.sourceRepository !== undefined) out.write(`  Source repository: ${p.sourceRepository}\n`);
          if (p.sourceRef !== undefined) out.write(`  Source ref:        ${p.sourceRef}\n`);
        }
        if (v.logIndex !== undefined) out.write(`  Transparency log:  index ${v.logIndex}${v.integratedTime ? ` at ${v.integratedTime}` : ""}\n`);
        out.write(`  Trusted root:      ${root.path}\n`);
      }
      return 0;
    } catch (err) {
      if (this.json)
        this.printJson(
          jsonError(`verification failed: ${(err as Error).message}`, { code: "failed", details: { reason: "VERIFICATION_FAILED", metadata: { digest } } }),
        );
      else this.context.stderr.write(`Verification failed: ${(err as Error).message}\n`);
      return 1;
    }
  }
}
