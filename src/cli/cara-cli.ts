import { Cli } from "clipanion";
import type { CaraContext } from "./base.js";
import { VERSION } from "../package-info.js";
import { nameValues } from "./value-names.js";

/** clipanion's Cli with every option value named in help and usage text (`--port <port>`, not `--port #0`). */
export class CaraCli extends Cli<CaraContext> {
  protected override getUsageByIndex(...args: Parameters<Cli<CaraContext>["getUsageByIndex"]>): ReturnType<Cli<CaraContext>["getUsageByIndex"]> {
    const { usage, options } = super.getUsageByIndex(...args);
    return { usage: nameValues(usage), options: options.map((o) => ({ ...o, definition: nameValues(o.definition) })) };
  }

  override error(...args: Parameters<Cli<CaraContext>["error"]>): string {
    return nameValues(super.error(...args));
  }
}

/** An empty `cara` command line parser for `context` (colours only on a terminal without NO_COLOR). */
export function newCli(context: CaraContext): CaraCli {
  return new CaraCli({
    binaryLabel: "cara: the Carapace control plane",
    binaryName: "cara",
    binaryVersion: VERSION,
    enableColors: (context.stdout as { isTTY?: boolean }).isTTY === true && !context.env.NO_COLOR,
  });
}
