import { createContext, useCallback, useContext, useEffect, useRef, useState } from "react";
import { createStore } from "./live";
import type { Tf } from "./format";
import type { PairInfo, Preferences, Signal } from "./types";

export interface AsyncState<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  reload: () => void;
}

/** Runs `load` when `deps` change; on failure retries every `retryMs` (0: never). */
export function useAsync<T>(load: () => Promise<T>, deps: unknown[], retryMs = 10000): AsyncState<T> {
  const [state, setState] = useState<{ data?: T; error?: unknown; loading: boolean }>({ loading: true });
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  useEffect(() => {
    let alive = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    setState((s) => ({ ...s, loading: true }));
    loadRef
      .current()
      .then((data) => alive && setState({ data, loading: false }))
      .catch((error) => {
        if (!alive) return;
        setState((s) => ({ data: s.data, error, loading: false }));
        if (retryMs > 0) timer = setTimeout(() => alive && setTick((t) => t + 1), retryMs);
      });
    return () => {
      alive = false;
      clearTimeout(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data: state.data, error: state.error, loading: state.loading, reload };
}

/** The current time, re-rendering every `ms`. */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const id = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(id);
  }, [ms]);
  return now;
}

export interface Toast {
  id: number;
  kind: "info" | "success" | "error" | "buy" | "sell";
  title: string;
  body?: string;
}
export const toasts = createStore<Toast[]>([]);
let toastId = 0;
/** Positions this page opened itself (it toasted them already). */
export const openedHere = new Set<string>();

export function toast(kind: Toast["kind"], title: string, body?: string, ms = 6000) {
  const t = { id: ++toastId, kind, title, body };
  toasts.set([...toasts.get().slice(-2), t]); // at most three at a time
  setTimeout(() => toasts.set(toasts.get().filter((x) => x.id !== t.id)), ms);
}

export interface Selection {
  pair: string;
  timeframe: Tf;
  signal?: Signal;
}

export interface AppData {
  prefs: Preferences | null;
  setPrefs: (p: Preferences) => void;
  pairs: PairInfo[];
  pairsError: unknown;
  /** The pair and timeframe the chart shows; a signal when one was clicked. */
  selection: Selection;
  select: (s: Selection) => void;
  navigate: (path: string) => void;
}

export const AppContext = createContext<AppData | null>(null);
export function useApp(): AppData {
  const v = useContext(AppContext);
  if (!v) throw new Error("AppContext missing");
  return v;
}

/** Bumped whenever positions may have changed (opened here, or a notification). */
export const positionsVersion = createStore(0);
export function bumpPositions() {
  positionsVersion.set(positionsVersion.get() + 1);
}
