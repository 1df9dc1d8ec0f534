// Task payloads in the reference's JSON shape ({"kind":"systemEvent","text":"..."}), as the CLI's
// --payload takes them, checked before they are sent so mistakes show next to the editor.
import { payloadText } from "../wire/payload-text.js";
import { fromJson, toJson, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { TaskPayloadSchema, type TaskPayload } from "../../gen/carapace/tasks/v1/tasks_pb.js";

export const PAYLOAD_KINDS = ["systemEvent", "agentTurn", "backup", "updateCheck"] as const;
export type PayloadKind = (typeof PAYLOAD_KINDS)[number];

export const TEMPLATES: Record<PayloadKind, JsonObject> = {
  systemEvent: { kind: "systemEvent", text: "checked from the console" },
  agentTurn: { kind: "agentTurn", message: "summarize recent logs" },
  backup: { kind: "backup", keep: 7 },
  updateCheck: { kind: "updateCheck", channel: "stable" },
};

/** The payload, or a sentence saying what is wrong with the text. */
export function parsePayload(text: string): { payload: TaskPayload } | { error: string } {
  let value: JsonValue;
  try {
    value = JSON.parse(text) as JsonValue;
  } catch (err) {
    return { error: `Not valid JSON: ${(err as Error).message}` };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value) || typeof value.kind !== "string") {
    return { error: `Expected an object with a "kind": ${PAYLOAD_KINDS.join(", ")}.` };
  }
  const { kind, ...rest } = value;
  if (!(PAYLOAD_KINDS as readonly string[]).includes(kind)) return { error: `Unknown payload kind "${kind}": use one of ${PAYLOAD_KINDS.join(", ")}.` };
  let payload: TaskPayload;
  try {
    payload = fromJson(TaskPayloadSchema, { [kind]: rest });
  } catch (err) {
    return { error: (err as Error).message.replace(/^cannot decode message carapace\.tasks\.v1\.TaskPayload from JSON: /, "") };
  }
  // The server's required fields, with its wording.
  const k = payload.kind;
  if (k.case === "systemEvent" && !k.value.text.trim()) return { error: "Invalid task payload: text is required" };
  if (k.case === "agentTurn" && !k.value.message.trim()) return { error: "Invalid task payload: message is required" };
  if (k.case === "backup" && (k.value.keep < 1 || k.value.keep > 1000)) return { error: "invalid payload.keep: must be between 1 and 1000" };
  return { payload };
}

/** A stored payload back in the reference's shape. */
export function payloadJson(p: TaskPayload | undefined): JsonObject {
  if (!p?.kind.case) return {};
  const json = toJson(TaskPayloadSchema, p) as JsonObject;
  const inner = json[p.kind.case];
  return { kind: p.kind.case, ...(typeof inner === "object" && inner !== null && !Array.isArray(inner) ? inner : {}) };
}

/** One line about what a task does (the CLI's words). */
export const payloadSummary = payloadText;

/** Policy fields with the server's bounds and wording. */
export const POLICY_FIELDS = [
  { key: "maxAttempts", label: "Max attempts", max: 10_000, unit: "", def: 100 },
  { key: "maxTotalRuntimeMs", label: "Max total runtime", max: 2_592_000_000, unit: "ms", def: 604_800_000 },
  { key: "maxTurns", label: "Max turns", max: 1000, unit: "", def: 25 },
  { key: "maxRunTimeoutSeconds", label: "Max run timeout", max: 86_400, unit: "s", def: 600 },
] as const;
export type PolicyKey = (typeof POLICY_FIELDS)[number]["key"];

/** A policy input's error, or undefined (blank = keep the default / current value). */
export function policyError(key: PolicyKey, text: string): string | undefined {
  if (text.trim() === "") return undefined;
  const f = POLICY_FIELDS.find((x) => x.key === key)!;
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || n < 1 || n > f.max) return `invalid policy.${key}: must be between 1 and ${f.max}`;
  return undefined;
}
