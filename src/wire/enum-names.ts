/**
 * The one naming rule for enum values outside protobuf's own JSON (stored records, CLI output and
 * `--json`, the console): a value's proto name without the enum's shared prefix, in lower case.
 * `TASK_STATE_RETRY_WAIT` is "retry_wait", `LOG_LEVEL_WARN` is "warn". The zero value
 * (`..._UNSPECIFIED`) has no name: it means "not set".
 *
 * Depends on nothing but the descriptor, so the console bundles it too.
 */
import type { DescEnum } from "@bufbuild/protobuf";
import type { GenEnum } from "@bufbuild/protobuf/codegenv2";

type EnumDesc = Pick<DescEnum, "values" | "sharedPrefix">;

/** The rule itself, on a value's proto name: `TASK_STATE_RETRY_WAIT` -> "retry_wait". */
export function shortEnumName(desc: Pick<DescEnum, "sharedPrefix">, protoName: string): string {
  const name = protoName.toLowerCase();
  const prefix = desc.sharedPrefix ?? "";
  return name.startsWith(prefix) ? name.slice(prefix.length) : name;
}

/** The name of `value` in `desc` by the rule above; undefined for 0 and for numbers `desc` does not declare. */
export function enumValueName(desc: EnumDesc, value: number): string | undefined {
  if (value === 0) return undefined;
  const v = desc.values.find((x) => x.number === value);
  return v ? shortEnumName(desc, v.name) : undefined;
}

/** An enum's names both ways, derived from its descriptor. */
export class EnumNames<E extends number> {
  /** Every name in number order (the zero value left out). */
  readonly names: readonly string[];
  private readonly byName: ReadonlyMap<string, E>;
  private readonly byNumber: ReadonlyMap<number, string>;

  constructor(desc: GenEnum<E>) {
    const pairs: [string, E][] = [];
    for (const v of desc.values) {
      const name = enumValueName(desc, v.number);
      if (name !== undefined) pairs.push([name, v.number as E]);
    }
    this.names = pairs.map(([name]) => name);
    this.byName = new Map(pairs);
    this.byNumber = new Map(pairs.map(([name, n]) => [n, name]));
  }

  /** "retry_wait" for TaskState.RETRY_WAIT; undefined for 0 and unknown numbers. */
  name(value: number): string | undefined {
    return this.byNumber.get(value);
  }

  /** TaskState.RETRY_WAIT for "retry_wait"; undefined for a string that names no value. */
  value(name: string): E | undefined {
    return this.byName.get(name);
  }

  /** A domain name as the wire value: 0 (unspecified) when absent or unknown. */
  toWire(name: string | undefined): E {
    return (name === undefined ? undefined : this.byName.get(name)) ?? (0 as E);
  }
}
