/**
 * Service handlers tested without a server: a generated client over Connect's in-memory router
 * transport (no HTTP, no process), with the server's error interceptor so errors carry the same
 * ErrorInfo they do on the wire. For what a real server adds (auth, HTTP status, protocols,
 * connection limits) use serveCara.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { after } from "node:test";
import { Writable } from "node:stream";
import type { DescService } from "@bufbuild/protobuf";
import { createClient, createRouterTransport, type Client, type ServiceImpl } from "@connectrpc/connect";
import type { DestinationStream } from "pino";
import { TasksService } from "../../gen/carapace/tasks/v1/tasks_pb.js";
import { createLogger } from "../../src/ops/logger.js";
import { errorInfoInterceptor } from "../../src/server/error-info.js";
import type { CaraConfig } from "../../src/state/config.js";
import { startTasks, type TasksRuntime } from "../../src/tasks/runtime.js";
import { tempDir } from "./cara.js";

/** A client for `service`, answered in this process by `impl`. */
export function routerClient<S extends DescService>(service: S, impl: ServiceImpl<S>): Client<S> {
  return createClient(
    service,
    createRouterTransport(({ service: route }) => route(service, impl), { router: { interceptors: [errorInfoInterceptor()] } }),
  );
}

/** Log lines are dropped (tests that read logs use serveCara). */
const nowhere = new Writable({ write: (_chunk, _encoding, done) => done() }) as unknown as DestinationStream;

export interface TasksUnderTest {
  client: Client<typeof TasksService>;
  runtime: TasksRuntime;
}

/**
 * The tasks runtime the server runs (durable store in a temp dir, worker, executors from
 * `config`), its TasksService behind a router client. The worker runs unless `worker: false`.
 * Closed at the end of the file.
 */
export async function tasksUnderTest(options: { config?: CaraConfig; worker?: boolean } = {}): Promise<TasksUnderTest> {
  const dir = join(await tempDir(), "tasks");
  await mkdir(dir, { mode: 0o700 });
  const runtime = await startTasks({ dir, config: options.config ?? {}, env: {}, logger: createLogger("info", nowhere) });
  const shutdown = new AbortController();
  if (options.worker !== false) runtime.worker.start();
  after(async () => {
    shutdown.abort();
    await runtime.close(1000);
  });
  return { client: routerClient(TasksService, runtime.service(shutdown.signal)), runtime };
}
