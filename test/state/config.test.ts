import assert from "node:assert/strict";
import { symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { loadConfig, validateConfig } from "../../src/state/config.js";
import { resolveServerOptions } from "../../src/server/options.js";
import { resolveStateDir } from "../../src/state/paths.js";
import { tempDir } from "../helpers/cara.js";

test("config errors name the key path and the rule", () => {
  const cases: [unknown, string][] = [
    [{ server: { port: "x" } }, 'invalid config c.json: server.port: Expected a number (got "x")'],
    [{ server: { prot: 1 } }, "invalid config c.json: server.prot: unknown key (got 1)"],
    [{ serverr: {} }, "invalid config c.json: serverr: unknown key (got {})"],
    [{ server: { port: 70000 } }, "invalid config c.json: server.port: Expected to be in the [0; 65535] range (got 70000)"],
    [{ logLevel: "loud" }, 'invalid config c.json: logLevel: Expected one of "trace", "debug", "info", "warn", "error", or "fatal" (got "loud")'],
    [[], "invalid config c.json: the top level must be a JSON object"],
    [{ health: { diskFreeFloorBytes: -1 } }, "invalid config c.json: health.diskFreeFloorBytes: Expected to be at least 0 (got -1)"],
    [{ server: { console: "yes" } }, 'invalid config c.json: server.console: Expected a boolean (got "yes")'],
    [
      { server: { cors: { allowedOrigins: ["https://ops.example.com/"] } } },
      'invalid config c.json: server.cors.allowedOrigins[0]: Expected an exact origin; write it as https://ops.example.com (got "https://ops.example.com/")',
    ],
    [
      { server: { cors: { allowedOrigins: ["http://a.example", "HTTP://B.example:80"] } } },
      'invalid config c.json: server.cors.allowedOrigins[1]: Expected an exact origin; write it as http://b.example (got "HTTP://B.example:80")',
    ],
    [
      { server: { cors: { allowedOrigins: ["*"] } } },
      'invalid config c.json: server.cors.allowedOrigins[0]: Expected an exact origin like https://ops.example.com (got "*")',
    ],
    [
      { server: { cors: { allowedOrigins: "https://a.example" } } },
      'invalid config c.json: server.cors.allowedOrigins: Expected an array (got "https://a.example")',
    ],
    [{ server: { cors: { origins: [] } } }, "invalid config c.json: server.cors.origins: unknown key (got an array)"],
  ];
  for (const [value, message] of cases) assert.throws(() => validateConfig(value, "c.json"), { message });
  assert.deepEqual(validateConfig({ server: { port: 1, bind: "::1" }, logLevel: "debug" }, "c.json"), { server: { port: 1, bind: "::1" }, logLevel: "debug" });
  const cors = { server: { console: false, cors: { allowedOrigins: ["https://ops.example.com", "http://127.0.0.1:5173", "http://[::1]:8080"] } } };
  assert.deepEqual(validateConfig(structuredClone(cors), "c.json"), cors);
});

test("loadConfig: missing file is an empty config; bad JSON and symlinks are refused with the file named", async () => {
  const dir = await tempDir();
  const file = join(dir, "config.json");
  assert.deepEqual(await loadConfig(file), {});
  await writeFile(file, "{ nope");
  await assert.rejects(loadConfig(file), new RegExp(`^Error: config ${file} is not valid JSON`));
  await writeFile(join(dir, "real.json"), "{}");
  const link = join(dir, "link.json");
  await symlink(join(dir, "real.json"), link);
  await assert.rejects(loadConfig(link), { message: `refusing to read config ${link}: it is a symbolic link` });
});

test("options precedence: flag > environment > config > default", () => {
  const config = { server: { port: 3000, bind: "127.0.0.2" }, logLevel: "warn" as const };
  const none = resolveServerOptions("/s", {}, {}, {});
  assert.equal(none.port, 18789);
  assert.equal(none.bind, "127.0.0.1");
  assert.equal(none.logLevel, "info");
  const fromConfig = resolveServerOptions("/s", {}, config, {});
  assert.deepEqual([fromConfig.port, fromConfig.bind, fromConfig.logLevel], [3000, "127.0.0.2", "warn"]);
  const fromEnv = resolveServerOptions("/s", {}, config, { CARAPACE_PORT: "4000", CARAPACE_BIND: "127.0.0.3", CARAPACE_LOG_LEVEL: "debug" });
  assert.deepEqual([fromEnv.port, fromEnv.bind, fromEnv.logLevel], [4000, "127.0.0.3", "debug"]);
  const fromFlag = resolveServerOptions("/s", { port: 5000, bind: "127.0.0.4", logLevel: "error" }, config, {
    CARAPACE_PORT: "4000",
    CARAPACE_LOG_LEVEL: "debug",
  });
  assert.deepEqual([fromFlag.port, fromFlag.bind, fromFlag.logLevel], [5000, "127.0.0.4", "error"]);
});

test("options: bad values and a non-loopback bind without TLS are refused", () => {
  assert.throws(() => resolveServerOptions("/s", {}, {}, { CARAPACE_PORT: "http" }), { message: "CARAPACE_PORT must be a port number 0..65535 (got 'http')" });
  assert.throws(() => resolveServerOptions("/s", { logLevel: "loud" }, {}, {}), {
    message: "--log-level must be one of trace, debug, info, warn, error, fatal (got 'loud')",
  });
  assert.throws(() => resolveServerOptions("/s", { tlsCert: "c.pem" }, {}, {}), /TLS needs both a certificate and a key/);
  assert.throws(() => resolveServerOptions("/s", { bind: "0.0.0.0" }, {}, {}), /^Error: refusing to listen on 0.0.0.0 without TLS/);
  assert.equal(resolveServerOptions("/s", { bind: "0.0.0.0", allowPlaintext: true }, {}, {}).bind, "0.0.0.0");
  assert.equal(resolveServerOptions("/s", { bind: "0.0.0.0", tlsCert: "c", tlsKey: "k" }, {}, {}).tls?.certFile, "c");
});

test("state dir resolution: flag, CARAPACE_STATE_DIR, XDG_CONFIG_HOME, home", () => {
  assert.equal(resolveStateDir("/flag", { CARAPACE_STATE_DIR: "/env" }), "/flag");
  assert.equal(resolveStateDir(undefined, { CARAPACE_STATE_DIR: "/env", XDG_CONFIG_HOME: "/xdg" }), "/env");
  assert.equal(resolveStateDir(undefined, { XDG_CONFIG_HOME: "/xdg" }), "/xdg/carapace");
  assert.match(resolveStateDir(undefined, {}), /\/\.config\/carapace$/);
});
