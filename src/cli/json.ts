import { toJson, type DescEnum, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { shortEnumName } from "../wire/enum-names.js";

/** A protobuf JSON enum name the short way (CHECK_STATUS_WARN -> "warn"); an unknown one as it came. */
function friendlyEnum(desc: DescEnum, name: unknown): unknown {
  if (typeof name !== "string") return name;
  return desc.values.some((v) => v.name === name) ? shortEnumName(desc, name) : name;
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
      case "list":
        if (field.listKind === "enum") out[key] = (value as unknown[]).map((v) => friendlyEnum(field.enum, v));
        else if (field.listKind === "message") out[key] = (value as unknown[]).map((v) => walk(field.message, v));
        break;
      case "map":
        if (field.mapKind === "enum" || field.mapKind === "message") {
          const m: Record<string, unknown> = {};
          for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
            m[k] = field.mapKind === "enum" ? friendlyEnum(field.enum, v) : walk(field.message, v);
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
 * The CLI's `--json` form of a message: canonical protobuf JSON (camelCase fields, int64 as
 * strings, RFC 3339 timestamps), with enum values written the short way (`"warn"`, not
 * `"CHECK_STATUS_WARN"`). Default values are included so every documented key is present.
 */
export function messageToCliJson<D extends DescMessage>(schema: D, message: MessageShape<D>): unknown {
  return walk(schema, toJson(schema, message, { alwaysEmitImplicit: true }));
}
