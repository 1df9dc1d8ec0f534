/**
 * A small analyzer for V8 `.cpuprofile` files (written by `node --cpu-prof`): self time per
 * function and per package/category, time attributed to the nearest non-Node frame, and
 * inclusive time of chosen functions. Only samples inside an optional window count.
 */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
  parent?: number;
}
export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface Share {
  name: string;
  ms: number;
  pct: number;
}

export interface ProfileSummary {
  /** Milliseconds of samples analysed (inside the window). */
  totalMs: number;
  /** Same, without (idle). */
  busyMs: number;
  sampleCount: number;
  windowed: boolean;
  /** Self time by category, % of busy time. */
  byCategory: Share[];
  /** Like byCategory, but Node-internal and native frames are charged to their nearest caller in a package or in our code. */
  attributed: Share[];
  /** Top functions by self time. */
  topSelf: (Share & { category: string; where: string })[];
  /** Inclusive (synchronous) time of functions of ours and of the libraries, % of busy time. */
  topInclusive: (Share & { category: string; where: string })[];
}

/** Category of a frame, from its script URL. `root` is the checkout (file URL path prefix). */
export function categorize(frame: CallFrame, root: string): string {
  const url = frame.url;
  const fn = frame.functionName;
  if (url === "") {
    if (fn === "(idle)") return "(idle)";
    if (fn === "(garbage collector)") return "GC";
    if (fn === "(program)") return "(program: V8/native, unattributed)";
    if (fn === "(root)") return "(root)";
    return "native (V8 builtins, bindings)";
  }
  const path = url.startsWith("file://") ? decodeURIComponent(url.slice(7)) : url;
  const nm = path.lastIndexOf("/node_modules/");
  if (nm >= 0) {
    const rest = path.slice(nm + 14).split("/");
    const pkg = rest[0]!.startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]!;
    if (pkg === "@connectrpc/connect") return "connect-es (@connectrpc/connect)";
    if (pkg === "@connectrpc/connect-node") return "connect-node";
    if (pkg === "@bufbuild/protobuf") return "protobuf-es";
    if (
      [
        "pino",
        "sonic-boom",
        "thread-stream",
        "pino-std-serializers",
        "fast-redact",
        "quick-format-unescaped",
        "safe-stable-stringify",
        "atomic-sleep",
        "on-exit-leak-free",
      ].includes(pkg)
    )
      return "pino (logging)";
    return `npm: ${pkg}`;
  }
  if (path.startsWith(root)) {
    const rel = path.slice(root.length).replace(/^\/+/, "");
    if (rel.startsWith("dist/gen/") || rel.startsWith("gen/")) return "ours: generated code (gen/)";
    if (rel.startsWith("dist/src/") || rel.startsWith("src/")) return "ours (src/)";
    if (rel.startsWith("bin/")) return "ours (src/)";
    return `ours: ${rel.split("/")[0]}`;
  }
  if (url.startsWith("node:")) {
    const m = url.slice(5);
    if (/^(_http_|http$|https$|internal\/http)/.test(m)) return "node: http (HTTP/1.1)";
    if (/http2/.test(m)) return "node: http2";
    if (/^(net$|internal\/stream_base_commons|internal\/net|dgram)/.test(m)) return "node: net/sockets";
    if (/(^stream$|internal\/streams\/)/.test(m)) return "node: streams";
    if (/^(fs$|internal\/fs\/)/.test(m)) return "node: fs";
    if (/^(events$|internal\/event_target|internal\/abort_controller)/.test(m)) return "node: events/EventTarget/AbortSignal";
    if (/^(internal\/process\/task_queues|internal\/timers|timers$|internal\/async_hooks|async_hooks$)/.test(m)) return "node: timers/microtasks/async";
    if (/^(internal\/url|url$|internal\/webstreams|internal\/encoding|buffer$|internal\/buffer)/.test(m)) return "node: url/buffer/encoding";
    if (/^(crypto$|internal\/crypto)/.test(m)) return "node: crypto";
    return "node: other";
  }
  return "other scripts";
}

const NODE_OR_NATIVE = (cat: string) => cat.startsWith("node:") || cat.startsWith("native") || cat.startsWith("(program");

function where(frame: CallFrame, root: string): string {
  let url = frame.url.startsWith("file://") ? decodeURIComponent(frame.url.slice(7)) : frame.url;
  if (url.startsWith(root)) url = url.slice(root.length).replace(/^\/+/, "");
  const nm = url.lastIndexOf("/node_modules/");
  if (nm >= 0) url = url.slice(nm + 14);
  return url ? `${url}:${frame.lineNumber + 1}` : "";
}

export function analyzeProfile(profile: CpuProfile, root: string, window?: { startUs: number; endUs: number }): ProfileSummary {
  const byId = new Map<number, ProfileNode>();
  for (const n of profile.nodes) byId.set(n.id, n);
  for (const n of profile.nodes) for (const c of n.children ?? []) byId.get(c)!.parent = n.id;
  const catOf = new Map<number, string>();
  for (const n of profile.nodes) catOf.set(n.id, categorize(n.callFrame, root));

  // Sample i lasts until sample i+1.
  const times: number[] = [];
  let t = profile.startTime;
  for (const d of profile.timeDeltas) {
    t += d;
    times.push(t);
  }
  const inWindow =
    window && times.length > 0 && window.startUs >= profile.startTime - 1e6 && window.endUs <= profile.endTime + 1e6 && window.startUs < window.endUs;

  const selfByNode = new Map<number, number>();
  let totalUs = 0;
  let count = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const ts = times[i]!;
    if (inWindow && (ts < window!.startUs || ts > window!.endUs)) continue;
    const next = times[i + 1] ?? profile.endTime;
    const dur = Math.max(0, Math.min(next - ts, 100_000));
    const id = profile.samples[i]!;
    selfByNode.set(id, (selfByNode.get(id) ?? 0) + dur);
    totalUs += dur;
    count++;
  }

  const cat = new Map<string, number>();
  const attributed = new Map<string, number>();
  const fnSelf = new Map<string, { us: number; category: string; where: string; name: string }>();
  const fnIncl = new Map<string, { us: number; category: string; where: string; name: string }>();
  let idleUs = 0;
  const keyOf = (n: ProfileNode) => `${n.callFrame.functionName || "(anonymous)"}@${n.callFrame.url}:${n.callFrame.lineNumber}:${n.callFrame.columnNumber}`;

  for (const [id, us] of selfByNode) {
    const node = byId.get(id)!;
    const c = catOf.get(id)!;
    if (c === "(idle)") idleUs += us;
    cat.set(c, (cat.get(c) ?? 0) + us);
    // Attribute Node-internal and native frames to the nearest caller that is not.
    let a = c;
    if (NODE_OR_NATIVE(c)) {
      let p = node.parent;
      a = "node: event loop / I/O callbacks (no JS caller)";
      while (p !== undefined) {
        const pc = catOf.get(p)!;
        if (!NODE_OR_NATIVE(pc) && pc !== "(root)") {
          a = pc;
          break;
        }
        p = byId.get(p)!.parent;
      }
      if (a.startsWith("node: event loop")) {
        // Keep the Node subsystem when no package or our code is on the stack.
        a = c.startsWith("node:") ? `${c} (called from the event loop)` : a;
      }
    }
    attributed.set(a, (attributed.get(a) ?? 0) + us);
    const k = keyOf(node);
    const f = fnSelf.get(k) ?? { us: 0, category: c, where: where(node.callFrame, root), name: node.callFrame.functionName || "(anonymous)" };
    f.us += us;
    fnSelf.set(k, f);
    // Inclusive: every distinct function on the stack gets the sample.
    const seen = new Set<string>();
    let p: number | undefined = id;
    while (p !== undefined) {
      const pn: ProfileNode = byId.get(p)!;
      const pk = keyOf(pn);
      if (!seen.has(pk)) {
        seen.add(pk);
        const e = fnIncl.get(pk) ?? { us: 0, category: catOf.get(p)!, where: where(pn.callFrame, root), name: pn.callFrame.functionName || "(anonymous)" };
        e.us += us;
        fnIncl.set(pk, e);
      }
      p = pn.parent;
    }
  }

  const busyUs = Math.max(1, totalUs - idleUs);
  const shares = (m: Map<string, number>): Share[] =>
    [...m.entries()]
      .filter(([k]) => k !== "(idle)")
      .map(([name, us]) => ({ name, ms: us / 1000, pct: (us / busyUs) * 100 }))
      .sort((a, b) => b.ms - a.ms);
  const fnList = (m: Map<string, { us: number; category: string; where: string; name: string }>, filter: (c: string, name: string) => boolean, n: number) =>
    [...m.values()]
      .filter((f) => filter(f.category, f.name))
      .sort((a, b) => b.us - a.us)
      .slice(0, n)
      .map((f) => ({ name: f.name, category: f.category, where: f.where, ms: f.us / 1000, pct: (f.us / busyUs) * 100 }));

  return {
    totalMs: totalUs / 1000,
    busyMs: busyUs / 1000,
    sampleCount: count,
    windowed: !!inWindow,
    byCategory: shares(cat),
    attributed: shares(attributed),
    topSelf: fnList(fnSelf, (c) => c !== "(idle)", 30),
    topInclusive: fnList(
      fnIncl,
      (c, name) => (c.startsWith("ours") || c.startsWith("connect") || c.startsWith("protobuf") || c.startsWith("pino")) && name !== "(anonymous)",
      40,
    ),
  };
}

/** A text report of a summary (for the console and bench/.out/profile-summary.txt). */
export function formatSummary(s: ProfileSummary, title: string): string {
  const pct = (v: number) => `${v.toFixed(1).padStart(5)}%`;
  const lines: string[] = [];
  lines.push(
    `${title}: ${s.sampleCount} samples, ${s.busyMs.toFixed(0)} ms busy of ${s.totalMs.toFixed(0)} ms${s.windowed ? " (load window only)" : " (whole run)"}`,
  );
  lines.push("", "Self time by category (% of busy time):");
  for (const c of s.byCategory) lines.push(`  ${pct(c.pct)}  ${c.name}`);
  lines.push("", "Self time, Node-internal/native frames charged to their nearest package or our code:");
  for (const c of s.attributed) lines.push(`  ${pct(c.pct)}  ${c.name}`);
  lines.push("", "Top functions by self time:");
  for (const f of s.topSelf) lines.push(`  ${pct(f.pct)}  ${f.name}  [${f.category}] ${f.where}`);
  lines.push("", "Inclusive (synchronous) time, our code and the libraries:");
  for (const f of s.topInclusive) lines.push(`  ${pct(f.pct)}  ${f.name}  [${f.category}] ${f.where}`);
  return lines.join("\n");
}
