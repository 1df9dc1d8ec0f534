/** The text and JSON that `cara restore` prints for a restore or its dry run. */
import type { ListChanges } from "../backup/restore-summary.js";
import { stripTerminalUnsafe } from "./terminal.js";

export interface FileDiffView {
  section: string;
  added: string[];
  changed: string[];
  removed: string[];
  counts: [number, number, number, number];
}

export interface TaskChangesView extends ListChanges {
  unchangedCount: number;
  states: { state: string; before: number; after: number }[];
  currentUnreadable: boolean;
}

export interface RestoreView {
  notes: string[];
  dryRun: boolean;
  restored: string[];
  pre: string | undefined;
  diffs: FileDiffView[];
  tasks: TaskChangesView | undefined;
  config: ListChanges | undefined;
  kept: string[];
}

/** What both restore paths report (over the API, or offline from the domain's result), as the report prints it. */
export function restoreView(
  res: {
    dryRun: boolean;
    restoredSections: string[];
    preRestoreBackupPath?: string | undefined;
    tasks?: TaskChangesView | undefined;
    config?: ListChanges | undefined;
    keptFiles: string[];
  },
  notes: string[],
  diffs: FileDiffView[],
): RestoreView {
  return {
    notes,
    dryRun: res.dryRun,
    restored: res.restoredSections,
    pre: res.preRestoreBackupPath,
    diffs: diffs.map(({ section, added, changed, removed, counts }) => ({ section, added, changed, removed, counts })),
    tasks: res.tasks,
    config: res.config,
    kept: res.keptFiles,
  };
}

const plural = (n: number, one: string) => `${n} ${one}${n === 1 ? "" : "s"}`;

function lists(c: ListChanges, indent: string): string {
  let text = "";
  for (const [sign, list, count] of [
    ["+", c.added, c.addedCount],
    ["-", c.removed, c.removedCount],
    ["~", c.changed, c.changedCount],
  ] as const) {
    for (const id of list) text += `${indent}${sign} ${stripTerminalUnsafe(id)}\n`;
    if (count > list.length) text += `${indent}${sign} … and ${count - list.length} more\n`;
  }
  return text;
}

/** The human summary: tasks by id and state, config keys by path, other sections by file. */
export function restoreText(v: RestoreView): string {
  let text = v.dryRun ? "Dry run: nothing was changed. The restore would do this:\n" : "Restore completed successfully\n";
  for (const note of v.notes) text += `  Note: ${note}\n`;
  for (const d of v.diffs) {
    if (d.section === "tasks" && v.tasks) {
      const t = v.tasks;
      text += `  tasks: ${t.addedCount} added, ${t.removedCount} removed, ${t.changedCount} changed, ${t.unchangedCount} unchanged\n`;
      if (t.currentUnreadable) text += "    (the current queue could not be read: every task of the backup counts as added)\n";
      text += lists(t, "    ");
      if (t.states.length > 0) text += `    by state: ${t.states.map((s) => `${s.state} ${s.before} → ${s.after}`).join(", ")}\n`;
      for (const k of v.kept) text += `    ${v.dryRun ? "keeps" : "kept"} ${stripTerminalUnsafe(k)} (a copy of a corrupt file)\n`;
      continue;
    }
    if (d.section === "config" && v.config) {
      const c = v.config;
      text += `  config: ${plural(c.addedCount, "key")} added, ${c.removedCount} removed, ${c.changedCount} ${v.dryRun ? "reverted to the backup's values" : "reverted"} (values not shown)\n`;
      text += lists(c, "    ");
      continue;
    }
    text += `  ${d.section}: ${plural(d.counts[0], "file")} added, ${d.counts[1]} changed, ${d.counts[2]} removed, ${d.counts[3]} unchanged\n`;
    for (const [sign, list] of [
      ["+", d.added],
      ["~", d.changed],
      ["-", d.removed],
    ] as const)
      for (const p of list.slice(0, 20)) text += `    ${sign} ${stripTerminalUnsafe(p)}\n`;
  }
  if (!v.dryRun) {
    text += `  Restored: ${v.restored.join(", ") || "(nothing)"}\n`;
    if (v.pre) text += `  Pre-restore backup: ${v.pre} (restore it to undo)\n`;
    if (v.restored.includes("config")) text += "  config.json was restored: restart the server to apply it.\n";
  }
  return text;
}

const ids = (c: ListChanges) => ({
  added: c.added,
  removed: c.removed,
  changed: c.changed,
  addedCount: c.addedCount,
  removedCount: c.removedCount,
  changedCount: c.changedCount,
});

/** The `--json` document. */
export function restoreJson(v: RestoreView): unknown {
  return {
    notes: v.notes,
    dryRun: v.dryRun,
    restoredSections: v.restored,
    preRestoreBackupPath: v.pre ?? null,
    diffs: v.diffs.map((d) => ({ section: d.section, added: d.added, changed: d.changed, removed: d.removed, unchanged: d.counts[3] })),
    tasks: v.tasks
      ? {
          ...ids(v.tasks),
          unchangedCount: v.tasks.unchangedCount,
          states: v.tasks.states.map((s) => ({ state: s.state, before: s.before, after: s.after })),
          currentUnreadable: v.tasks.currentUnreadable,
        }
      : null,
    config: v.config ? ids(v.config) : null,
    keptFiles: v.kept,
  };
}
