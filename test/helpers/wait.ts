/**
 * Waiting for a condition that no event announces (a file another process writes, a line a
 * spawned server prints, a cached health evaluation): checks `fn` every 25 ms until it gives a
 * value (anything but undefined or false), or fails after `timeoutMs` naming `what`.
 * Prefer an event where there is one (a stream, a store's change event).
 */
export function until<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const tick = async () => {
      try {
        const v = await fn();
        if (v !== undefined && v !== false) return resolve(v);
      } catch {
        // not yet
      }
      if (Date.now() > deadline) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 25);
    };
    void tick();
  });
}
