/** A count with its noun for people: `1 task`, `2 tasks`, `0 files` (`plural` for irregular nouns). */
export function formatCount(n: number | bigint, singular: string, plural = `${singular}s`): string {
  return `${n} ${Number(n) === 1 ? singular : plural}`;
}
