import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { test } from "node:test";
import { promisify } from "node:util";
import { runCli } from "../helpers/cli.js";

const run = promisify(execFile);

test("help names every option value; cara help and cara help <command> exit 0", async () => {
  const general = await runCli(["help"]);
  assert.equal(general.code, 0);
  assert.ok(general.stdout.startsWith("cara: the Carapace control plane - "));
  assert.ok(
    general.stdout.includes(
      "  cara [--verbose] [--port,-p <port>] [--bind <address>] [--state-dir <dir>] [--log-level <level>] [--tls-cert <file>] [--tls-key <file>] [--allow-plaintext]\n",
    ),
  );
  assert.ok(!/#\d/.test(general.stdout), "no #0 placeholders");
  assert.equal((await runCli(["--help"])).stdout, general.stdout);

  const one = await runCli(["help", "status"]);
  assert.equal(one.code, 0);
  assert.ok(one.stdout.startsWith("Show whether the server is healthy, and why\n\nUsage\n\n$ cara status\n\nOptions\n\n"));
  assert.ok(
    one.stdout.includes("\n  --port,-p <port>        Server port (default: CARAPACE_PORT, the port the local server recorded, the local config, or 18789)\n"),
    one.stdout,
  );
  assert.equal(one.stdout, (await runCli(["status", "--help"])).stdout);
  assert.equal((await runCli(["help", "task", "create"])).code, 0);
  assert.equal((await runCli(["help", "start"])).code, 0);
  for (const command of ["task create --help", "backup verify --help", "update verify --help", "logs --help", "restore --help", "completion --help"]) {
    const r = await runCli(command.split(" "));
    assert.equal(r.code, 0);
    assert.ok(!/#\d/.test(r.stdout), `${command}: ${r.stdout}`);
  }
});

test("install --help lays out the install directory as a list, options aligned", async () => {
  const r = await runCli(["install", "--help"]);
  assert.equal(r.code, 0);
  assert.ok(
    r.stdout.includes(
      "  --verbose                Print stack traces on errors\n" +
        "  --dir <dir>              Install directory (created if missing)\n" +
        "  --version <version>      Version to install (default: the newest on the channel)\n",
    ),
    r.stdout,
  );
  assert.ok(
    r.stdout.includes(
      "installs it into DIR:\n\n- `DIR/versions/<version>/`: the release\n\n- `DIR/current`: symlink to the version that runs\n\n- `DIR/bin/cara`: the launcher; put DIR/bin on PATH and run `cara start`\n\nThe form follows what runs the command:",
    ),
    r.stdout,
  );
});

test("a mistyped command gets 'did you mean'; a missing required option is named; exit 2", async () => {
  assert.deepEqual(await runCli(["stauts"]), {
    code: 2,
    stdout: "",
    stderr: "Error: unknown command 'stauts', did you mean 'status'?\nRun 'cara help' for the list of commands.\n",
  });
  assert.deepEqual(await runCli(["frobnicate"]), {
    code: 2,
    stdout: "",
    stderr: "Error: unknown command 'frobnicate'\nRun 'cara help' for the list of commands.\n",
  });
  assert.deepEqual(await runCli(["task", "craete"]), {
    code: 2,
    stdout: "",
    stderr: "Error: unknown command 'task craete', did you mean 'task create'?\nRun 'cara help' for the list of commands.\n",
  });
  assert.deepEqual(await runCli(["backup", "verfy", "x.tar.gz"]), {
    code: 2,
    stdout: "",
    stderr: "Error: unknown command 'backup verfy', did you mean 'backup verify'?\nRun 'cara help' for the list of commands.\n",
  });
  assert.deepEqual(await runCli(["help", "stauts"]), {
    code: 2,
    stdout: "",
    stderr: "Error: unknown command 'stauts', did you mean 'status'?\nRun 'cara help' for the list of commands.\n",
  });
  assert.deepEqual(await runCli(["strat"]), {
    code: 2,
    stdout: "",
    stderr: "Error: unknown command 'strat', did you mean 'start'?\nRun 'cara help' for the list of commands.\n",
  });
  assert.deepEqual(await runCli(["status", "--josn"]), {
    code: 2,
    stdout: "",
    stderr: "Error: unknown option '--josn', did you mean '--json'?\nRun 'cara status --help' for usage.\n",
  });
  assert.deepEqual(await runCli(["task", "list", "--stat", "done"]), {
    code: 2,
    stdout: "",
    stderr: "Error: unknown option '--stat', did you mean '--state'?\nRun 'cara task list --help' for usage.\n",
  });
  assert.deepEqual(await runCli(["task", "get"]), { code: 2, stdout: "", stderr: "Error: missing argument <id>\nRun 'cara task get --help' for usage.\n" });
  assert.deepEqual(await runCli(["update", "verify", "--bundle", "b", "--certificate-oidc-issuer", "x"]), {
    code: 2,
    stdout: "",
    stderr: "Error: missing argument <artifact|sha256:<hex>>\nRun 'cara update verify --help' for usage.\n",
  });
  assert.deepEqual(await runCli(["install"]), {
    code: 2,
    stdout: "",
    stderr: "Error: missing required option --dir <dir>\nRun 'cara install --help' for usage.\n",
  });
  assert.deepEqual(await runCli(["verify", "--port", "1"]), {
    code: 2,
    stdout: "",
    stderr: "Error: missing required option --outcome <outcome>\nRun 'cara verify --help' for usage.\n",
  });
  assert.deepEqual(await runCli(["update", "verify", "x", "--bundle", "b"]), {
    code: 2,
    stdout: "",
    stderr: "Error: missing required option --certificate-oidc-issuer <url>\nRun 'cara update verify --help' for usage.\n",
  });
});

test("--json errors are one document on stdout with the same exit code", async () => {
  const usage = await runCli(["install", "--json"]);
  assert.equal(usage.code, 2);
  assert.equal(usage.stderr, "");
  assert.deepEqual(JSON.parse(usage.stdout), { error: { code: "usage", message: "missing required option --dir <dir>", details: {} } });

  // Nothing listens on port 1.
  const down = await runCli(["task", "get", "abc", "--json", "--port", "1", "--timeout", "5s"]);
  assert.equal(down.code, 1);
  assert.equal(down.stderr, "");
  const doc = JSON.parse(down.stdout);
  assert.deepEqual(Object.keys(doc), ["error"]);
  assert.equal(doc.error.code, "unavailable");
  assert.match(doc.error.message, /^Could not connect to carapace at 127\.0\.0\.1:1 /);
  assert.deepEqual(doc.error.details, {});

  const badFlag = await runCli(["task", "list", "--limit", "many", "--json", "--port", "1"]);
  assert.equal(badFlag.code, 2);
  assert.equal(JSON.parse(badFlag.stdout).error.code, "usage");
});

test("cara completion prints scripts derived from the commands; bash completes words and options", async () => {
  const bash = await runCli(["completion", "bash"]);
  assert.equal(bash.code, 0);
  const complete = async (...words: string[]) => {
    const script = `${bash.stdout}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")}); COMP_CWORD=${words.length - 1}; _cara; echo "\${COMPREPLY[*]}"`;
    return (await run("bash", ["-c", script])).stdout;
  };
  assert.equal(await complete("cara", "sta"), "status start\n");
  assert.equal(await complete("cara", "task", "cr"), "create\n");
  assert.equal(await complete("cara", "task", "create", "--pay"), "--payload\n");
  assert.equal(await complete("cara", "backup", "verify", "x.tar.gz", "--secret"), "--secret-file\n");
  assert.equal(await complete("cara", "comp"), "completion\n");

  const zsh = await runCli(["completion", "zsh"]);
  assert.equal(zsh.code, 0);
  assert.ok(zsh.stdout.startsWith("#compdef cara\n"));
  assert.ok(zsh.stdout.includes("complete -o default -F _cara cara\n"));
  const fish = await runCli(["completion", "fish"]);
  assert.equal(fish.code, 0);
  assert.ok(fish.stdout.includes("complete -c cara -n '__fish_use_subcommand' -f -a status -d 'Show whether the server is healthy, and why'\n"), fish.stdout);
  assert.ok(
    fish.stdout.includes("complete -c cara -n '__fish_seen_subcommand_from task; and __fish_seen_subcommand_from create' -l payload -r\n"),
    fish.stdout,
  );
  assert.deepEqual(await runCli(["completion", "tcsh"]), { code: 2, stdout: "", stderr: "Error: unknown shell 'tcsh': choose bash, zsh or fish\n" });
});

test("jsonText: no $typeName, bigint as a number when exact, else a string", async () => {
  const { jsonText } = await import("../../src/cli/output.js");
  assert.equal(jsonText({ $typeName: "x.Y", a: 5n, b: 2n ** 60n, c: [{ $typeName: "x.Z", d: 1 }] }), '{"a":5,"b":"1152921504606846976","c":[{"d":1}]}');
});
