/**
 * The CLI in this process: `main(args, context)` with in-memory stdout and stderr, a clean
 * environment and an optional working directory, so a CLI test costs a function call instead of a
 * process. What it prints and returns is what `cara` prints and exits with (bin/cara.js only adds
 * the process around it); true end-to-end tests keep runCara for the real binary.
 */
import { Readable, Writable } from "node:stream";
import { main } from "../../src/cli/main.js";
import { cleanEnv } from "./cara.js";

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** A stream that keeps what is written to it, as text, and says when it changes. */
class TextSink extends Writable {
  text = "";
  private waiters: (() => void)[] = [];

  override _write(chunk: Buffer | string, _encoding: BufferEncoding, done: () => void): void {
    this.text += chunk.toString();
    for (const w of this.waiters.splice(0)) w();
    done();
  }

  /** Resolves once the text matches (checked on every write). */
  async until(test: RegExp | ((text: string) => boolean)): Promise<string> {
    const ok = typeof test === "function" ? test : (t: string) => test.test(t);
    while (!ok(this.text)) await new Promise<void>((resolve) => this.waiters.push(resolve));
    return this.text;
  }
}

export interface CliOptions {
  /** On top of a clean environment (no CARAPACE_* from the developer's shell, NO_COLOR=1). */
  env?: Record<string, string>;
  cwd?: string;
  /** What the command reads on stdin. */
  stdin?: string;
  /** Stops a command that runs until interrupted (as Ctrl-C does the real one). */
  signal?: AbortSignal;
  /** stdout says it is a terminal (isTTY), as when a person runs the command. */
  tty?: boolean;
  /** stdin and stderr say they are terminals (isTTY): prompts and progress lines are drawn. */
  ttyInput?: boolean;
}

export interface CliProcess {
  stdout: TextSink;
  stderr: TextSink;
  done: Promise<CliRun>;
}

/** Starts `cara args` in this process; `done` resolves with its exit code and output. */
export function startCli(args: string[], options: CliOptions = {}): CliProcess {
  const stdout = new TextSink();
  const stderr = new TextSink();
  if (options.tty) Object.assign(stdout, { isTTY: true });
  const stdin = Readable.from(options.stdin === undefined ? [] : [options.stdin]);
  if (options.ttyInput) {
    Object.assign(stdin, { isTTY: true });
    Object.assign(stderr, { isTTY: true });
  }
  const context = {
    stdin,
    stdout,
    stderr,
    env: cleanEnv(options.env),
    colorDepth: 1,
    ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  };
  const done = main(args, context).then((code) => ({ code, stdout: stdout.text, stderr: stderr.text }));
  return { stdout, stderr, done };
}

/** Runs `cara args` in this process to completion. */
export function runCli(args: string[], options: CliOptions = {}): Promise<CliRun> {
  return startCli(args, options).done;
}
