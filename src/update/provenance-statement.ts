/**
 * The in-toto statement inside a DSSE attestation bundle, read after its signature, certificate
 * and transparency-log entry have been verified (src/update/sigstore-bundle.ts): what it is
 * about (its subjects' SHA-256 digests), what kind of claim it makes (its predicate type) and,
 * for SLSA provenance v1, who built the artifact from which source.
 *
 * GitHub artifact attestations (actions/attest-build-provenance) are an in-toto Statement v1
 * with one subject per attested file and a SLSA provenance v1 predicate whose build type is
 * GitHub Actions' workflow type: `buildDefinition.externalParameters.workflow` names the
 * repository, ref and workflow path, `runDetails.builder.id` the workflow that ran.
 *
 * Pure functions over bytes: no cryptography here; the caller must not trust anything it reads
 * before the envelope's signature is verified.
 */

export const IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json";
export const IN_TOTO_STATEMENT_V1 = "https://in-toto.io/Statement/v1";
export const SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1";
/** The predicate types `cara update verify` accepts unless told otherwise. */
export const DEFAULT_PREDICATE_TYPES: readonly string[] = [SLSA_PROVENANCE_V1];

export interface StatementSubject {
  name: string;
  /** Lowercase hex, when the subject lists a sha256 digest. */
  sha256?: string;
}

export interface Statement {
  subjects: StatementSubject[];
  predicateType: string;
  predicate: Record<string, unknown>;
}

/** What a verified provenance attestation says about the artifact (shown by `cara update verify`). */
export interface VerifiedProvenance {
  predicateType: string;
  /** The name of the subject whose digest is the artifact's. */
  subject: string;
  /** SLSA v1 `runDetails.builder.id`. */
  builderId?: string;
  /** SLSA v1 `buildDefinition.buildType`. */
  buildType?: string;
  /** `buildDefinition.externalParameters.workflow.repository` (GitHub Actions build type). */
  sourceRepository?: string;
  /** `buildDefinition.externalParameters.workflow.ref` (GitHub Actions build type). */
  sourceRef?: string;
  /** `buildDefinition.externalParameters.workflow.path` (GitHub Actions build type). */
  workflowPath?: string;
}

/** A refusal of the statement's content, with a stable code; the caller adds its own prefix. */
export class StatementError extends Error {
  constructor(
    message: string,
    readonly code: "DSSE_PAYLOAD_TYPE" | "STATEMENT_PARSE_ERROR" | "PREDICATE_TYPE_NOT_ALLOWED" | "SUBJECT_DIGEST_MISMATCH" | "PREDICATE_ERROR",
  ) {
    super(message);
    this.name = "StatementError";
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** The envelope must carry an in-toto statement; anything else is refused by its payload type. */
export function checkPayloadType(payloadType: string): void {
  if (payloadType !== IN_TOTO_PAYLOAD_TYPE) {
    throw new StatementError(
      `the DSSE payload type '${payloadType}' is not accepted (expected ${IN_TOTO_PAYLOAD_TYPE}, an in-toto statement)`,
      "DSSE_PAYLOAD_TYPE",
    );
  }
}

/** Parses the DSSE payload as an in-toto Statement v1; every defect is named. */
export function parseStatement(payload: Uint8Array): Statement {
  const bad = (why: string) => new StatementError(`the attestation's in-toto statement is not parseable: ${why}`, "STATEMENT_PARSE_ERROR");
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(payload));
  } catch (err) {
    throw bad(`the payload is not UTF-8 JSON (${(err as Error).message})`);
  }
  if (!isObject(json)) throw bad("the payload is not a JSON object");
  if (json._type !== IN_TOTO_STATEMENT_V1) throw bad(`_type is ${JSON.stringify(json._type)}, expected "${IN_TOTO_STATEMENT_V1}"`);
  if (!Array.isArray(json.subject) || json.subject.length === 0) throw bad("subject is missing or empty");
  const subjects = json.subject.map((s: unknown, i: number): StatementSubject => {
    if (!isObject(s)) throw bad(`subject[${i}] is not an object`);
    if (!isObject(s.digest)) throw bad(`subject[${i}].digest is missing`);
    const name = typeof s.name === "string" ? s.name : "";
    const sha256 = s.digest.sha256;
    if (sha256 === undefined) return { name };
    if (typeof sha256 !== "string" || !/^[0-9a-fA-F]{64}$/.test(sha256)) throw bad(`subject[${i}].digest.sha256 is not 64 hex characters`);
    return { name, sha256: sha256.toLowerCase() };
  });
  if (typeof json.predicateType !== "string" || json.predicateType === "") throw bad("predicateType is missing");
  if (!isObject(json.predicate)) throw bad("predicate is missing or not an object");
  return { subjects, predicateType: json.predicateType, predicate: json.predicate };
}

/** The predicate type must be one of `allowed`. */
export function checkPredicateType(statement: Statement, allowed: readonly string[]): void {
  if (!allowed.includes(statement.predicateType)) {
    throw new StatementError(
      `the attestation's predicate type '${statement.predicateType}' is not allowed (allowed: ${allowed.join(", ")})`,
      "PREDICATE_TYPE_NOT_ALLOWED",
    );
  }
}

/** The subject whose sha256 is the artifact's; refused naming both sides when none is. */
export function subjectFor(statement: Statement, digest: string): StatementSubject {
  const found = statement.subjects.find((s) => s.sha256 === digest);
  if (found) return found;
  const listed = statement.subjects.map((s) => `${s.name || "(unnamed)"} sha256:${s.sha256 ?? "(none)"}`).join(", ");
  throw new StatementError(
    `no subject of the attestation has the artifact's SHA-256 (artifact sha256:${digest}; subjects: ${listed})`,
    "SUBJECT_DIGEST_MISMATCH",
  );
}

function stringAt(root: unknown, path: readonly string[]): string | undefined {
  let at = root;
  for (const key of path) {
    if (!isObject(at)) return undefined;
    at = at[key];
  }
  return typeof at === "string" && at !== "" ? at : undefined;
}

/**
 * What the verified statement says about the artifact. For SLSA provenance v1 the builder id is
 * required (the specification makes it so, and provenance without a builder proves nothing);
 * the source fields are read where GitHub's workflow build type puts them and shown when present.
 */
export function describeProvenance(statement: Statement, subject: StatementSubject): VerifiedProvenance {
  const out: VerifiedProvenance = { predicateType: statement.predicateType, subject: subject.name };
  if (statement.predicateType !== SLSA_PROVENANCE_V1) return out;
  const p = statement.predicate;
  const builderId = stringAt(p, ["runDetails", "builder", "id"]);
  if (builderId === undefined) throw new StatementError("the SLSA provenance has no runDetails.builder.id (who built the artifact)", "PREDICATE_ERROR");
  out.builderId = builderId;
  const fields: [keyof VerifiedProvenance, string[]][] = [
    ["buildType", ["buildDefinition", "buildType"]],
    ["sourceRepository", ["buildDefinition", "externalParameters", "workflow", "repository"]],
    ["sourceRef", ["buildDefinition", "externalParameters", "workflow", "ref"]],
    ["workflowPath", ["buildDefinition", "externalParameters", "workflow", "path"]],
  ];
  for (const [field, path] of fields) {
    const v = stringAt(p, path);
    if (v !== undefined) out[field] = v;
  }
  return out;
}
