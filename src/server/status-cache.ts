/**
 * Shares one evaluation of `compute` among every caller within `ttlMs` (and while `key()` stays
 * the same, e.g. the health monitor's generation): under load a GetStatus costs one statfs, one /proc read and one pass over the task
 * store per half second, not per call. A failed evaluation is not kept.
 */
export function sharedFor<T, K>(ttlMs: number, compute: () => Promise<T>, key: () => K): () => Promise<T> {
  let cached: { at: number; key: K; value: Promise<T> } | undefined;
  return () => {
    const now = performance.now();
    const k = key();
    if (!cached || now - cached.at > ttlMs || cached.key !== k) {
      const value = compute();
      // The key as it is once compute has begun: compute may itself move it (GetStatus starts
      // a health evaluation), and the next caller should not recompute for that.
      const entry = { at: now, key: key(), value };
      value.catch(() => {
        if (cached === entry) cached = undefined;
      });
      cached = entry;
    }
    return cached.value;
  };
}
