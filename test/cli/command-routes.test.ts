import assert from "node:assert/strict";
import { test } from "node:test";
import { Cli, type CommandClass } from "clipanion";
import { buildCli } from "../../src/cli/all-commands.js";
import type { CaraContext } from "../../src/cli/base.js";
import { COMMAND_ROUTES, routeOf } from "../../src/cli/command-routes.js";
import { CompletionCommand } from "../../src/cli/completion.js";
import { HelpCommand } from "../../src/cli/help-command.js";

test("each route loads the class whose paths it lists, and every verb has a route", async () => {
  const routed = new Set<CommandClass<CaraContext>>();
  for (const route of COMMAND_ROUTES) {
    const command = await route.load();
    routed.add(command);
    // The default command ([]) is reached through the parser with every command.
    assert.deepEqual(
      (command.paths ?? []).filter((p) => p.length > 0),
      route.paths,
    );
  }
  const cli = buildCli(Cli.defaultContext);
  const registered = new Set(cli.definitions().map((d) => d.path));
  const pathsOf = (commands: CommandClass<CaraContext>[]) =>
    commands.flatMap((c) =>
      Cli.from<CaraContext>([c], { binaryName: "cara" })
        .definitions()
        .map((d) => d.path),
    );
  const expected = new Set(pathsOf([...routed]));
  for (const p of pathsOf([HelpCommand, CompletionCommand])) registered.delete(p);
  for (const builtin of ["cara -h", "cara -v"]) registered.delete(builtin);
  assert.deepEqual([...registered].sort(), [...expected].sort());
});

test("routeOf picks the longest command path spelled by the leading words", () => {
  const paths = (args: string[]) => routeOf(args)?.paths;
  assert.deepEqual(paths(["version"]), [["version"]]);
  assert.deepEqual(paths(["task", "list", "--json"]), [["task", "list"]]);
  assert.deepEqual(paths(["update", "verify", "x"]), [["update", "verify"]]);
  assert.deepEqual(paths(["update", "--status"]), [["update"]]);
  assert.deepEqual(paths(["backup", "create"]), [["backup"], ["backup", "create"]]);
  assert.deepEqual(paths(["backup", "verify", "f"]), [["backup", "verify"]]);
  assert.equal(paths([]), undefined);
  assert.equal(paths(["--help"]), undefined);
  assert.equal(paths(["help", "task"]), undefined);
  assert.equal(paths(["completion", "bash"]), undefined);
  assert.equal(paths(["task"]), undefined);
  assert.equal(paths(["stauts"]), undefined);
});
