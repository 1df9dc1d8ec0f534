import { useEffect, useRef, useState } from "preact/hooks";
import { isCancel, report, type Problem } from "./errors.js";

export interface Polled<T> {
  data: T | undefined;
  problem: Problem | undefined;
  /** When the last answer arrived (epoch ms). */
  at: number | undefined;
  /** Asks again now (after an action changed something). */
  refresh: () => void;
}

/**
 * Calls `fetcher` now and every `intervalMs` while the tab is visible (a hidden tab asks once
 * it shows again), keeping the last answer through errors so the page does not jump.
 */
export function usePoll<T>(fetcher: (signal: AbortSignal) => Promise<T>, intervalMs: number, deps: readonly unknown[]): Polled<T> {
  const [state, setState] = useState<{ data?: T; problem?: Problem; at?: number }>({});
  const wake = useRef<() => void>(() => undefined);
  useEffect(() => {
    const stop = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    let running = false;
    let again = false;
    const run = async (): Promise<void> => {
      clearTimeout(timer);
      if (stop.signal.aborted) return;
      if (running) {
        again = true; // asked while a call is in flight: ask once more right after it
        return;
      }
      if (document.hidden) return; // resumed by visibilitychange
      running = true;
      try {
        const data = await fetcher(stop.signal);
        if (!stop.signal.aborted) setState({ data, at: Date.now() });
      } catch (err) {
        if (!stop.signal.aborted && !isCancel(err)) setState((s) => ({ ...s, problem: report(err) }));
      } finally {
        running = false;
      }
      if (stop.signal.aborted) return;
      if (again) {
        again = false;
        return run();
      }
      timer = setTimeout(run, intervalMs);
    };
    wake.current = () => void run();
    const onVisible = () => !document.hidden && void run();
    document.addEventListener("visibilitychange", onVisible);
    void run();
    return () => {
      stop.abort();
      clearTimeout(timer);
      document.removeEventListener("visibilitychange", onVisible);
    };
  }, deps);
  return { data: state.data, problem: state.problem, at: state.at, refresh: () => wake.current() };
}

/** The current time, re-rendering every `ms` (uptimes, ages, countdowns). */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

/** A fresh AbortController per mount, aborted on unmount (for streams and one-off calls). */
export function useUnmountSignal(): AbortSignal {
  const ref = useRef<AbortController | undefined>(undefined);
  if (!ref.current) ref.current = new AbortController();
  useEffect(() => () => ref.current?.abort(), []);
  return ref.current.signal;
}
