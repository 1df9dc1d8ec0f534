/**
 * A response body read as UTF-8 text of at most `cap` bytes, for the small JSON answers of a
 * release source or an LLM endpoint (never a silent unbounded buffer). Past the cap the body is
 * cancelled and, with `over: "truncate"`, what fitted is returned; with `over: "throw"`,
 * BodyTooLargeError is thrown. `signal` is checked before every read.
 */
export class BodyTooLargeError extends Error {
  constructor(readonly cap: number) {
    super(`the body is larger than ${cap} bytes`);
    this.name = "BodyTooLargeError";
  }
}

export async function readCapped(
  body: AsyncIterable<Uint8Array> | null | undefined,
  cap: number,
  options: { over: "truncate" | "throw"; signal?: AbortSignal },
): Promise<string> {
  if (!body) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  options.signal?.throwIfAborted();
  // Leaving the loop early (break or throw) cancels the body.
  for await (const chunk of body) {
    size += chunk.byteLength;
    if (size > cap) {
      if (options.over === "throw") throw new BodyTooLargeError(cap);
      break;
    }
    chunks.push(chunk);
    options.signal?.throwIfAborted();
  }
  return Buffer.concat(chunks).toString("utf8");
}
