import { useCallback, useEffect, useMemo, useRef, useState, useSyncExternalStore } from "react";
import { api, ApiError, describeError, outages, session } from "./api";
import { fmtPct, pairCode, tfFromAny, type Tf } from "./format";
import { AppContext, bumpPositions, openedHere, toast, toasts, useApp, type AppData, type Selection } from "./hooks";
import { connection, live, notificationEvents, socketErrors, signalEvents, useStore } from "./live";
import { ErrorBoundary } from "./components/ErrorBoundary";
import type { PairInfo, Preferences, Signal } from "./types";
import AuthPage from "./pages/Auth";
import Dashboard from "./pages/Dashboard";
import SignalsPage from "./pages/Signals";
import PositionsPage from "./pages/Positions";
import PerformancePage from "./pages/Performance";
import ModelPage from "./pages/Model";
import SettingsPage from "./pages/Settings";

const ROUTES: { path: string; label: string; id: string }[] = [
  { path: "/", label: "Dashboard", id: "dashboard" },
  { path: "/signals", label: "Signals", id: "signals" },
  { path: "/positions", label: "Positions", id: "positions" },
  { path: "/performance", label: "Performance", id: "performance" },
  { path: "/model", label: "Model", id: "model" },
  { path: "/settings", label: "Settings", id: "settings" },
];

export default function App() {
  const st = useSyncExternalStore(session.subscribe, session.getState, session.getState);
  useEffect(() => {
    void session.refresh();
  }, []);
  if (st.status === "loading") {
    return (
      <div className="splash" data-testid="app-loading">
        <span className="spinner" aria-hidden /> Restoring your session…
      </div>
    );
  }
  if (st.status === "signedOut") return <AuthPage notice={st.notice} />;
  return <Shell key={st.user?.id} />;
}

/** The timeframe a pair's board card and chart use by default: the first of the user's
 * timeframes the pair has signals on, else the pair's first (shortest) one. */
export function defaultTimeframe(pair: PairInfo | undefined, prefs: Preferences | null): Tf {
  const own = (pair?.timeframes ?? []).map((t) => tfFromAny(t)).filter(Boolean) as Tf[];
  const wanted = (prefs?.timeframes ?? []).map((t) => tfFromAny(t)).filter(Boolean) as Tf[];
  return wanted.find((t) => own.includes(t)) ?? own[0] ?? "1h";
}

function Shell() {
  const [path, setPath] = useState(location.pathname);
  const [prefs, setPrefs] = useState<Preferences | null>(null);
  const [pairs, setPairs] = useState<PairInfo[]>([]);
  const [pairsError, setPairsError] = useState<unknown>(null);
  const [selection, setSelection] = useState<Selection>({ pair: "EUR/USD", timeframe: "1h" });
  const [menuOpen, setMenuOpen] = useState(false);
  const user = session.state.user;
  const selectedByUser = useRef(false);

  useEffect(() => {
    live.start();
    return () => {
      live.stop();
      outages.clear();
    };
  }, []);

  useEffect(() => {
    const onPop = () => setPath(location.pathname);
    addEventListener("popstate", onPop);
    return () => removeEventListener("popstate", onPop);
  }, []);

  const navigate = useCallback((to: string) => {
    if (to !== location.pathname) history.pushState(null, "", to);
    setPath(to);
    setMenuOpen(false);
    scrollTo(0, 0);
  }, []);

  // Preferences and pairs: retried until they load.
  useEffect(() => {
    let alive = true;
    let timer: ReturnType<typeof setTimeout>;
    const loadPrefs = () =>
      api<{ preferences: Preferences }>("/api/v1/auth/preferences")
        .then((r) => alive && setPrefs(r.preferences))
        .catch(() => alive && (timer = setTimeout(loadPrefs, 10000)));
    loadPrefs();
    return () => {
      alive = false;
      clearTimeout(timer);
    };
  }, []);
  useEffect(() => {
    let alive = true;
    let timer: ReturnType<typeof setTimeout>;
    const load = () =>
      api<{ pairs: PairInfo[] }>("/api/v1/market/pairs", { query: { pageSize: 500 } })
        .then((r) => {
          if (!alive) return;
          setPairs(r.pairs ?? []);
          setPairsError(null);
        })
        .catch((e) => {
          if (!alive) return;
          setPairsError(e);
          timer = setTimeout(load, 10000);
        });
    load();
    return () => {
      alive = false;
      clearTimeout(timer);
    };
  }, []);

  // Default chart selection: the first followed pair, on its default timeframe.
  useEffect(() => {
    if (selectedByUser.current || !pairs.length || !prefs) return;
    const followed = prefs.pairs.length ? prefs.pairs : pairs.filter((p) => p.timeframes?.length).map((p) => p.pair);
    const first = pairs.find((p) => p.pair === followed[0]) ?? pairs[0];
    setSelection({ pair: first.pair, timeframe: defaultTimeframe(first, prefs) });
  }, [pairs, prefs]);

  const select = useCallback((s: Selection) => {
    selectedByUser.current = true;
    setSelection(s);
  }, []);

  // Toasts and browser notifications for signals the user asked for.
  const prefsRef = useRef(prefs);
  prefsRef.current = prefs;
  useEffect(() => {
    const offSignal = signalEvents.on((s: Signal) => {
      const p = prefsRef.current;
      // HOLD means "stay out": nothing to act on, so no alert (the board still shows it).
      if (!p || !p.notifyBrowser || s.action === "hold") return;
      if (p.pairs.length && !p.pairs.includes(s.pair)) return;
      const tfs = p.timeframes.map((t) => tfFromAny(t));
      if (tfs.length && !tfs.includes(s.timeframe)) return;
      if (s.confidence < (p.minConfidence ?? 0)) return;
      const title = `${s.action.toUpperCase()} ${s.pair} (${s.timeframe})`;
      const body = `Confidence ${fmtPct(s.confidence)} · entry ${s.entryPrice}`;
      toast(s.action === "buy" ? "buy" : s.action === "sell" ? "sell" : "info", title, body);
      if ("Notification" in window && Notification.permission === "granted") {
        try {
          new Notification(`AIFX: ${title}`, { body, tag: `aifx-signal-${s.id}` });
        } catch {
          /* some browsers only allow notifications from a service worker */
        }
      }
    });
    const offNote = notificationEvents.on((n) => {
      bumpPositions();
      if (n.type === "position_opened" && openedHere.delete(n.position?.id ?? "")) return;
      const kind = n.type === "stop_loss_hit" ? "error" : n.type === "take_profit_hit" ? "success" : "info";
      toast(kind, n.type.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase()), n.message);
    });
    const offErr = socketErrors.on((e) => toast("error", "Live feed", e.message));
    return () => {
      offSignal();
      offNote();
      offErr();
    };
  }, []);

  const data: AppData = useMemo(
    () => ({ prefs, setPrefs, pairs, pairsError, selection, select, navigate }),
    [prefs, pairs, pairsError, selection, select, navigate],
  );

  const route = ROUTES.find((r) => r.path === path) ?? (path === "/login" || path === "/signup" ? ROUTES[0] : null);
  let page;
  switch (route?.id) {
    case "dashboard":
      page = <Dashboard />;
      break;
    case "signals":
      page = <SignalsPage />;
      break;
    case "positions":
      page = <PositionsPage />;
      break;
    case "performance":
      page = <PerformancePage />;
      break;
    case "model":
      page = <ModelPage />;
      break;
    case "settings":
      page = <SettingsPage />;
      break;
    default:
      page = (
        <div className="panel" data-testid="not-found">
          <h2>Page not found</h2>
          <p className="muted">There is nothing at {path}.</p>
          <button onClick={() => navigate("/")}>Go to the dashboard</button>
        </div>
      );
  }

  return (
    <AppContext.Provider value={data}>
      <header className="topbar">
        <a
          className="brand"
          href="/"
          onClick={(e) => {
            e.preventDefault();
            navigate("/");
          }}
        >
          <span className="logo" aria-hidden>
            ◢
          </span>{" "}
          AIFX
        </a>
        <button
          className="ghost nav-toggle"
          aria-label="Menu"
          aria-expanded={menuOpen}
          onClick={() => setMenuOpen((o) => !o)}
          data-testid="nav-toggle"
        >
          ☰
        </button>
        <nav className={menuOpen ? "nav open" : "nav"} aria-label="Main">
          {ROUTES.map((r) => (
            <a
              key={r.id}
              href={r.path}
              className={route?.id === r.id ? "active" : ""}
              aria-current={route?.id === r.id ? "page" : undefined}
              data-testid={`nav-${r.id}`}
              onClick={(e) => {
                e.preventDefault();
                navigate(r.path);
              }}
            >
              {r.label}
            </a>
          ))}
        </nav>
        <div className="topbar-right">
          <ConnectionPill />
          <span className="user muted" data-testid="user-name" title={user?.email}>
            {user?.username}
          </span>
          <button className="ghost small" onClick={() => void session.logout()} data-testid="logout-button">
            Sign out
          </button>
        </div>
      </header>
      <main className="content">
        <OutageBanner pairsError={pairsError} />
        <ErrorBoundary label={route?.label ?? "page"} key={path}>
          {page}
        </ErrorBoundary>
      </main>
      <Footer />
      <Toasts />
    </AppContext.Provider>
  );
}

/** Which services are unavailable right now (any failed call says so; the next call
 * that succeeds clears it). */
function OutageBanner({ pairsError }: { pairsError: unknown }) {
  const down = useSyncExternalStore(outages.subscribe, outages.get, outages.get);
  const entries = Object.entries(down);
  const otherPairsError = pairsError && !(pairsError instanceof ApiError && pairsError.unavailable);
  if (!entries.length && !otherPairsError) return null;
  return (
    <div className="banner error" role="alert" data-testid="service-banner">
      {entries.map(([svc, msg]) => (
        <div key={svc}>
          <b>{svc} unavailable</b> — retrying automatically. <span className="muted-light">({msg})</span>
        </div>
      ))}
      {otherPairsError ? <div>{describeError(pairsError, "Market data")} — retrying</div> : null}
    </div>
  );
}

function ConnectionPill() {
  const state = useStore(connection);
  const label = { live: "Live", connecting: "Connecting…", reconnecting: "Reconnecting…", offline: "Offline" }[state];
  return (
    <span className={`conn conn-${state}`} data-testid="connection-state" data-state={state} title="Live feed (Socket.IO)">
      <span className="dot" aria-hidden /> {label}
    </span>
  );
}

function Footer() {
  return (
    <footer className="footer">
      <span>
        AIFX signals are model outputs, not financial advice. The model has no demonstrated edge — see the Model page.
      </span>
      <span>
        Charts by{" "}
        <a href="https://www.tradingview.com/" target="_blank" rel="noopener noreferrer" data-testid="tradingview-link">
          TradingView
        </a>{" "}
        (lightweight-charts)
      </span>
    </footer>
  );
}

function Toasts() {
  const list = useStore(toasts);
  return (
    <div className="toasts" aria-live="polite" data-testid="toasts">
      {list.map((t) => (
        <div key={t.id} className={`toast toast-${t.kind}`} data-testid="toast">
          <strong>{t.title}</strong>
          {t.body ? <div>{t.body}</div> : null}
        </div>
      ))}
    </div>
  );
}

// Re-exported for pages that need the pair list helpers.
export function followedPairs(app: ReturnType<typeof useApp>): PairInfo[] {
  if (!app.pairs.length && app.pairsError && app.prefs?.pairs.length) {
    // The pair list is unavailable: the user's own pairs, on their own timeframes.
    return app.prefs.pairs.map((pair) => ({
      pair,
      baseCurrency: pair.slice(0, 3),
      quoteCurrency: pair.slice(-3),
      pipSize: pair.endsWith("JPY") ? 0.01 : 0.0001,
      timeframes: app.prefs!.timeframes,
    }));
  }
  const withSignals = app.pairs.filter((p) => (p.timeframes ?? []).length > 0);
  if (!app.prefs || !app.prefs.pairs.length) return withSignals;
  const set = new Set(app.prefs.pairs.map(pairCode));
  return app.pairs.filter((p) => set.has(pairCode(p.pair)));
}
