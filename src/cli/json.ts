import { ScalarType, toJson, type DescEnum, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { shortEnumName } from "../wire/enum-names.js";

/** A protobuf JSON enum name the short way (CHECK_STATUS_WARN -> "warn"); an unknown one as it came. */
function friendlyEnum(desc: DescEnum, name: unknown): unknown {
  if (typeof name !== "string") return name;
  return desc.values.some((v) => v.name === name) ? shortEnumName(desc, name) : name;
}

const INT64 = new Set<ScalarType>([ScalarType.INT64, ScalarType.UINT64, ScalarType.SINT64, ScalarType.FIXED64, ScalarType.SFIXED64]);

/** A 64-bit integer (a string in protobuf JSON) as a number when a double holds it exactly. */
function int64(scalar: ScalarType, value: unknown): unknown {
  if (!INT64.has(scalar) || typeof value !== "string") return value;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : value;
}

function walk(desc: DescMessage, json: unknown): unknown {
  if (typeof json !== "object" || json === null || Array.isArray(json)) return json;
  if (desc.typeName.startsWith("google.protobuf.")) return json;
  const out: Record<string, unknown> = { ...(json as Record<string, unknown>) };
  for (const field of desc.fields) {
    const key = field.jsonName;
    if (!(key in out)) continue;
    const value = out[key];
    switch (field.fieldKind) {
      case "enum":
        out[key] = friendlyEnum(field.enum, value);
        break;
      case "message":
        out[key] = walk(field.message, value);
        break;
      case "scalar":
        out[key] = int64(field.scalar, value);
        break;
      case "list":
        if (field.listKind === "scalar") out[key] = (value as unknown[]).map((v) => int64(field.scalar, v));
        else if (field.listKind === "enum") out[key] = (value as unknown[]).map((v) => friendlyEnum(field.enum, v));
        else if (field.listKind === "message") out[key] = (value as unknown[]).map((v) => walk(field.message, v));
        break;
      case "map":
        {
          const m: Record<string, unknown> = {};
          for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
            m[k] = field.mapKind === "enum" ? friendlyEnum(field.enum, v) : field.mapKind === "message" ? walk(field.message, v) : int64(field.scalar, v);
          }
          out[key] = m;
        }
        break;
      default:
        break;
    }
  }
  return out;
}

/**
 * The CLI's `--json` form of a message: canonical protobuf JSON (camelCase fields, RFC 3339
 * timestamps, no `$typeName`), with enum values written the short way (`"warn"`, not
 * `"CHECK_STATUS_WARN"`) and 64-bit integers as numbers (as strings only beyond 2^53, where a
 * double would change them). Default values are included so every documented key is present.
 */
export function messageToCliJson<D extends DescMessage>(schema: D, message: MessageShape<D>): unknown {
  return walk(schema, toJson(schema, message, { alwaysEmitImplicit: true }));
}
