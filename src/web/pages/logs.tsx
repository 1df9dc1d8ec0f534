import type { JsonObject } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { LogLevel, LogLevelSchema } from "../../../gen/carapace/ops/v1/ops_pb.js";
import { ops, unary } from "../api.js";
import { isCancel, report, type Problem } from "../errors.js";
import { clock, enumName, tsMs } from "../format.js";
import { Badge, PageHeader, ProblemLine, type Tone } from "../ui.js";

type Line =
  | { kind: "entry"; key: string; seq: bigint; time: number; level: LogLevel; component: string; message: string; fields: JsonObject | undefined }
  | { kind: "dropped"; key: string; count: bigint };

/** Every row has this height, so the list can be windowed and never shifts while lines arrive. */
const ROW_PX = 24;
/** Rows rendered above and below the visible window. */
const OVERSCAN = 8;
const LEVEL_TONE: Record<number, Tone> = { [LogLevel.WARN]: "warn", [LogLevel.ERROR]: "fail", [LogLevel.FATAL]: "fail", [LogLevel.INFO]: "info" };
const LEVELS = [LogLevel.TRACE, LogLevel.DEBUG, LogLevel.INFO, LogLevel.WARN, LogLevel.ERROR, LogLevel.FATAL];

/** The line as text, as it is copied. */
export function lineText(l: Line): string {
  if (l.kind === "dropped") return `${l.count} lines dropped`;
  const fields = l.fields && Object.keys(l.fields).length > 0 ? ` ${JSON.stringify(l.fields)}` : "";
  return `${new Date(l.time).toISOString()} ${enumName(LogLevelSchema, l.level).toUpperCase()} ${l.component}: ${l.message}${fields}`;
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
  });

/**
 * Live FollowLogs with server-side filters (min level, contains). Keeps at most the server's
 * ring capacity of lines (what the server itself keeps), renders only the visible rows, batches
 * arrivals per animation frame, and shows the stream's "N lines dropped" markers in place.
 */
export function LogsPage() {
  const [level, setLevel] = useState<LogLevel>(LogLevel.UNSPECIFIED);
  const [draft, setDraft] = useState("");
  const [contains, setContains] = useState("");
  const [paused, setPaused] = useState(false);
  const [state, setState] = useState<"connecting" | "live" | "paused" | "retrying">("connecting");
  const [problem, setProblem] = useState<Problem | undefined>();
  const [, setVersion] = useState(0);
  const [selected, setSelected] = useState<string | undefined>();
  const [copied, setCopied] = useState<string | undefined>();
  const [view, setView] = useState({ top: 0, height: 480 });
  const [following, setFollowing] = useState(true);
  const [unseen, setUnseen] = useState(0);

  const lines = useRef<Line[]>([]);
  const pending = useRef<Line[]>([]);
  const frame = useRef(0);
  const capacity = useRef(5000);
  const lastSeq = useRef<bigint | undefined>(undefined);
  const linesFor = useRef("");
  const dropped = useRef(0n);
  const viewport = useRef<HTMLDivElement>(null);
  const followRef = useRef(true);

  // The ring's capacity bounds what this page keeps.
  useEffect(() => {
    const stop = new AbortController();
    ops.getStatus({}, unary(stop.signal)).then(
      (s) => {
        if (s.logs?.ringCapacity) capacity.current = s.logs.ringCapacity;
      },
      () => undefined,
    );
    return () => stop.abort();
  }, []);

  // Typing settles for 300 ms before the stream restarts with the new filter.
  useEffect(() => {
    const t = setTimeout(() => setContains(draft), 300);
    return () => clearTimeout(t);
  }, [draft]);

  const flush = () => {
    frame.current = 0;
    const add = pending.current;
    pending.current = [];
    const all = lines.current;
    all.push(...add);
    const over = all.length - capacity.current;
    if (over > 0) {
      all.splice(0, over);
      // Keep what the reader looks at in place when old lines leave at the top.
      if (!followRef.current && viewport.current) viewport.current.scrollTop = Math.max(0, viewport.current.scrollTop - over * ROW_PX);
    }
    if (!followRef.current) setUnseen((n) => n + add.length);
    setVersion((v) => v + 1);
  };
  const push = (line: Line) => {
    pending.current.push(line);
    if (!frame.current) frame.current = requestAnimationFrame(flush);
  };

  useEffect(() => {
    const key = `${level}|${contains}`;
    if (linesFor.current !== key) {
      // New filter: start over with the last 200 matching lines.
      linesFor.current = key;
      lines.current = [];
      pending.current = [];
      lastSeq.current = undefined;
      setSelected(undefined);
      setVersion((v) => v + 1);
    }
    if (paused) {
      setState("paused");
      return;
    }
    const stop = new AbortController();
    void (async () => {
      for (let attempt = 0; !stop.signal.aborted; attempt++) {
        setState(attempt === 0 ? "connecting" : "retrying");
        try {
          const filter = { minLevel: level, contains };
          const req = lastSeq.current !== undefined ? { afterSeq: lastSeq.current, filter } : { tail: 200, filter };
          let first = true;
          for await (const res of ops.followLogs(req, { signal: stop.signal })) {
            if (first) {
              first = false;
              attempt = 0;
              setState("live");
              setProblem(undefined);
            }
            if (res.event.case === "entry") {
              const e = res.event.value;
              lastSeq.current = e.seq;
              push({
                kind: "entry",
                key: `s${e.seq}`,
                seq: e.seq,
                time: tsMs(e.time) ?? 0,
                level: e.level,
                component: e.component,
                message: e.message,
                fields: e.fields,
              });
            } else if (res.event.case === "dropped") {
              dropped.current += res.event.value;
              push({ kind: "dropped", key: `d${lastSeq.current ?? 0n}-${dropped.current}`, count: res.event.value });
            }
          }
          // A clean end means the server is shutting down: reconnect once it is back.
          setState("live");
        } catch (err) {
          if (stop.signal.aborted || isCancel(err)) return;
          const p = report(err);
          setProblem(p);
          if (p.code === Code.InvalidArgument) return; // a bad filter: waiting will not fix it
        }
        await sleep(Math.min(10_000, 1000 * 2 ** Math.min(attempt, 4)), stop.signal);
      }
    })();
    return () => stop.abort();
  }, [level, contains, paused]);

  // Stick to the newest line while the reader is at the bottom.
  useLayoutEffect(() => {
    const el = viewport.current;
    if (el && followRef.current) el.scrollTop = el.scrollHeight;
  });

  useEffect(() => {
    const el = viewport.current;
    if (!el) return;
    const measure = () => setView({ top: el.scrollTop, height: el.clientHeight });
    measure();
    const ro = new ResizeObserver(measure);
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  const onScroll = () => {
    const el = viewport.current;
    if (!el) return;
    const atBottom = el.scrollTop + el.clientHeight >= el.scrollHeight - ROW_PX / 2;
    followRef.current = atBottom;
    if (atBottom !== following) setFollowing(atBottom);
    if (atBottom) setUnseen(0);
    setView({ top: el.scrollTop, height: el.clientHeight });
  };

  const jumpToLatest = () => {
    followRef.current = true;
    setFollowing(true);
    setUnseen(0);
    const el = viewport.current;
    if (el) el.scrollTop = el.scrollHeight;
  };

  const all = lines.current;
  const selectedIndex = selected ? all.findIndex((l) => l.key === selected) : -1;
  const selectedLine = selectedIndex >= 0 ? all[selectedIndex] : undefined;
  const first = Math.max(0, Math.floor(view.top / ROW_PX) - OVERSCAN);
  const last = Math.min(all.length, Math.ceil((view.top + view.height) / ROW_PX) + OVERSCAN);

  const select = (index: number) => {
    const line = all[Math.max(0, Math.min(all.length - 1, index))];
    if (!line) return;
    setSelected(line.key);
    const el = viewport.current;
    const i = all.indexOf(line);
    if (el) {
      if (i * ROW_PX < el.scrollTop) el.scrollTop = i * ROW_PX;
      else if ((i + 1) * ROW_PX > el.scrollTop + el.clientHeight) el.scrollTop = (i + 1) * ROW_PX - el.clientHeight;
    }
  };

  const onKey = (e: KeyboardEvent) => {
    const page = Math.max(1, Math.floor(view.height / ROW_PX) - 1);
    const at = selectedIndex >= 0 ? selectedIndex : all.length;
    const moves: Record<string, number> = { ArrowDown: at + 1, ArrowUp: at - 1, PageDown: at + page, PageUp: at - page, Home: 0, End: all.length - 1 };
    const to = moves[e.key];
    if (to !== undefined) {
      e.preventDefault();
      select(to);
    } else if ((e.key === "Enter" || e.key === "c") && selectedLine) {
      e.preventDefault();
      void copy(selectedLine);
    } else if (e.key === "Escape") {
      setSelected(undefined);
    }
  };

  const copy = async (line: Line) => {
    const text = lineText(line);
    try {
      await navigator.clipboard.writeText(text);
      setCopied(line.key);
    } catch {
      setCopied(undefined);
      setProblem({ text: "The browser did not allow copying: select the text in the details below and copy it by hand." });
    }
  };

  const levelName = (l: LogLevel) => enumName(LogLevelSchema, l);
  return (
    <>
      <PageHeader title="Logs">
        <span class={`stream-state ${state}`} role="status">
          {state === "live" ? "● live" : state === "paused" ? "❚❚ paused" : state === "retrying" ? "reconnecting…" : "connecting…"}
        </span>
      </PageHeader>
      <form class="toolbar" onSubmit={(e) => e.preventDefault()} aria-label="Log filters">
        <label>
          Level
          <select value={String(level)} onChange={(e) => setLevel(Number((e.target as HTMLSelectElement).value) as LogLevel)}>
            <option value={String(LogLevel.UNSPECIFIED)}>all levels</option>
            {LEVELS.map((l) => (
              <option key={l} value={String(l)}>
                {levelName(l)} and above
              </option>
            ))}
          </select>
        </label>
        <label class="grow">
          Contains <span class="muted">(case-sensitive)</span>
          <input type="search" value={draft} placeholder="text in the message or component" onInput={(e) => setDraft((e.target as HTMLInputElement).value)} />
        </label>
        <button type="button" onClick={() => setPaused(!paused)} aria-pressed={paused}>
          {paused ? "Resume" : "Pause"}
        </button>
      </form>
      <ProblemLine problem={problem} />
      <p class="muted log-meta">
        <span class="num">{all.length}</span> lines kept (at most {capacity.current}, like the server's ring)
        {dropped.current > 0n && (
          <>
            {" "}
            · <span class="num">{String(dropped.current)}</span> dropped by the server for this page
          </>
        )}
      </p>
      <div class="log-frame">
        <div
          class="log-viewport"
          ref={viewport}
          onScroll={onScroll}
          onKeyDown={onKey}
          tabIndex={0}
          role="listbox"
          aria-label="Log lines, newest last. Arrow keys select a line, Enter copies it."
          aria-activedescendant={selectedLine ? `log-${selectedLine.key}` : undefined}
        >
          <div class="log-spacer" style={{ height: `${all.length * ROW_PX}px` }}>
            {all.slice(first, last).map((l, i) => {
              const top = `${(first + i) * ROW_PX}px`;
              if (l.kind === "dropped") {
                return (
                  // biome-ignore lint/a11y/useKeyWithClickEvents lint/a11y/useFocusableInteractive: an option of the listbox, which takes the focus and the keys (aria-activedescendant)
                  <div
                    key={l.key}
                    id={`log-${l.key}`}
                    class={`log-row dropped ${selected === l.key ? "selected" : ""}`}
                    style={{ top }}
                    role="option"
                    aria-selected={selected === l.key}
                    onClick={() => setSelected(l.key)}
                  >
                    — {String(l.count)} lines dropped (this page read too slowly) —
                  </div>
                );
              }
              return (
                // biome-ignore lint/a11y/useKeyWithClickEvents lint/a11y/useFocusableInteractive: an option of the listbox, which takes the focus and the keys (aria-activedescendant)
                <div
                  key={l.key}
                  id={`log-${l.key}`}
                  class={`log-row ${selected === l.key ? "selected" : ""}`}
                  style={{ top }}
                  role="option"
                  aria-selected={selected === l.key}
                  onClick={() => setSelected(l.key)}
                >
                  <span class="log-time">{clock(l.time)}</span>
                  <span class={`log-level ${LEVEL_TONE[l.level] ?? "muted"}`}>{levelName(l.level)}</span>
                  <span class="log-comp">{l.component}</span>
                  <span class="log-msg">{l.message}</span>
                </div>
              );
            })}
          </div>
        </div>
        {!following && (
          <button type="button" class="jump" onClick={jumpToLatest}>
            ↓ Latest{unseen > 0 ? ` (${unseen} new)` : ""}
          </button>
        )}
      </div>
      <section class="panel log-details" aria-label="Selected line">
        {selectedLine ? (
          <>
            <div class="panel-head">
              <h2>Selected line</h2>
              <div class="panel-actions">
                <button type="button" onClick={() => void copy(selectedLine)}>
                  Copy line
                </button>
                <span class="muted" role="status">
                  {copied === selectedLine.key ? "Copied." : ""}
                </span>
              </div>
            </div>
            {selectedLine.kind === "entry" ? (
              <>
                <p>
                  <Badge tone={LEVEL_TONE[selectedLine.level] ?? "muted"}>{levelName(selectedLine.level)}</Badge>{" "}
                  <span class="num">{new Date(selectedLine.time).toISOString()}</span> · {selectedLine.component} · seq {String(selectedLine.seq)}
                </p>
                <pre class="wrap">{selectedLine.message}</pre>
                {selectedLine.fields && Object.keys(selectedLine.fields).length > 0 && <pre class="wrap">{JSON.stringify(selectedLine.fields, null, 2)}</pre>}
              </>
            ) : (
              <p>{lineText(selectedLine)}: the server skipped them because this page read too slowly; they are still in the server's log file.</p>
            )}
          </>
        ) : (
          <p class="muted">Select a line (click, or arrow keys in the list) to see all of it and copy it.</p>
        )}
      </section>
    </>
  );
}
