// Small shared pieces of the console's UI.
import type { ComponentChildren } from "preact";
import type { Problem } from "./errors.js";

export type Tone = "ok" | "warn" | "fail" | "info" | "muted";

/** A status word with colour and text (never colour alone). */
export function Badge({ tone, children }: { tone: Tone; children: ComponentChildren }) {
  return <span class={`badge ${tone}`}>{children}</span>;
}

export function Notice({ tone, title, children, live }: { tone: Tone; title?: string; children?: ComponentChildren; live?: boolean }) {
  return (
    <div class={`notice ${tone}`} role={live ? (tone === "fail" ? "alert" : "status") : undefined}>
      {title && <strong class="notice-title">{title}</strong>}
      {children && <div>{children}</div>}
    </div>
  );
}

/** The last problem of a call, in a line that always takes its space (no layout shift). */
export function ProblemLine({ problem, idle }: { problem: Problem | undefined; idle?: string }) {
  return (
    <p class={`problem-line ${problem ? "has-problem" : ""}`} role="status">
      {problem ? problem.text : (idle ?? "\u00a0")}
    </p>
  );
}

export function PageHeader({ title, children }: { title: string; children?: ComponentChildren }) {
  return (
    <div class="page-header">
      <h1 tabIndex={-1} id="page-title">
        {title}
      </h1>
      {children && <div class="page-actions">{children}</div>}
    </div>
  );
}

export function Section({ title, id, children, actions }: { title: string; id?: string; children: ComponentChildren; actions?: ComponentChildren }) {
  const hid = id ? `${id}-title` : undefined;
  return (
    <section class="panel" aria-labelledby={hid} id={id}>
      <div class="panel-head">
        <h2 id={hid}>{title}</h2>
        {actions && <div class="panel-actions">{actions}</div>}
      </div>
      {children}
    </section>
  );
}

/** Key/value rows (a description list). */
export function Facts({ rows }: { rows: [string, ComponentChildren][] }) {
  return (
    <dl class="facts">
      {rows.map(([k, v]) => (
        <div class="fact" key={k}>
          <dt>{k}</dt>
          <dd>{v}</dd>
        </div>
      ))}
    </dl>
  );
}

/** "updated 3 s ago" for polled data. */
export function Freshness({ at, now }: { at: number | undefined; now: number }) {
  if (at === undefined) return <span class="muted">loading…</span>;
  const s = Math.max(0, Math.round((now - at) / 1000));
  return <span class="muted freshness">updated {s < 2 ? "just now" : `${s} s ago`}</span>;
}
