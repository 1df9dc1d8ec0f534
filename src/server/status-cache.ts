/**
 * Shares one evaluation of `compute` among every caller within `ttlMs` (and while `key()` stays
 * the same): under load a GetStatus costs one statfs, one /proc read and one pass over the task
 * store per half second, not per call. A failed evaluation is not kept.
 */
export function sharedFor<T, K>(ttlMs: number, compute: () => Promise<T>, key: () => K): () => Promise<T> {
  let cached: { at: number; key: K; value: Promise<T> } | undefined;
  return () => {
    const now = performance.now();
    const k = key();
    if (!cached || now - cached.at > ttlMs || cached.key !== k) {
      const value = compute();
      const entry = { at: now, key: k, value };
      value.catch(() => {
        if (cached === entry) cached = undefined;
      });
      cached = entry;
    }
    return cached.value;
  };
}
