import { useEffect, useRef, useState } from "react";
import { api, ApiError, describeError } from "../api";
import { defaultTimeframe, followedPairs } from "../App";
import PriceChart from "../components/PriceChart";
import { OpenPositions } from "../components/PositionsTable";
import { fmtNum, fmtPct, fmtPrice, pairCode, priceDigits, tfFromAny, timeAgo, TIMEFRAMES, type Tf } from "../format";
import { bumpPositions, openedHere, toast, useApp, useNow } from "../hooks";
import { live, market, quotes, signalEvents, useStore } from "../live";
import { signalFromRest, type PairInfo, type Position, type Signal } from "../types";

export default function Dashboard() {
  const app = useApp();
  const { selection, select, pairs } = app;
  const pairInfo = pairs.find((p) => p.pair === selection.pair);
  const tfs = (pairInfo?.series ?? []).map((s) => tfFromAny(s.timeframe)).filter(Boolean) as Tf[];
  return (
    <div className="dashboard">
      <MarketStrip />
      <SignalBoard />
      <section className="panel chart-panel">
        <div className="panel-head wrap">
          <h2>
            {selection.pair} <span className="muted">· {selection.timeframe}</span>
          </h2>
          <div className="row">
            <label className="inline">
              <span className="sr-only">Pair</span>
              <select
                value={selection.pair}
                onChange={(e) => {
                  const p = pairs.find((x) => x.pair === e.target.value);
                  select({ pair: e.target.value, timeframe: defaultTimeframe(p, app.prefs) });
                }}
                data-testid="chart-pair-select"
              >
                {(pairs.length ? pairs.map((p) => p.pair) : [selection.pair]).map((p) => (
                  <option key={p} value={p}>
                    {p}
                  </option>
                ))}
              </select>
            </label>
            <div className="seg" role="group" aria-label="Timeframe" data-testid="chart-timeframe">
              {(tfs.length ? tfs : TIMEFRAMES).map((t) => (
                <button
                  key={t}
                  className={t === selection.timeframe ? "active" : ""}
                  onClick={() => select({ pair: selection.pair, timeframe: t, signal: selection.signal?.timeframe === t ? selection.signal : undefined })}
                  data-testid={`chart-tf-${t}`}
                >
                  {t}
                </button>
              ))}
            </div>
          </div>
        </div>
        <PriceChart pair={selection.pair} timeframe={selection.timeframe} signal={selection.signal} />
        {selection.signal && selection.signal.pair === selection.pair ? (
          <div className="legend muted" data-testid="chart-legend">
            Lines: <span className="lg entry">Entry {fmtPrice(selection.signal.entryPrice, selection.pair)}</span>
            {selection.signal.stopLoss !== undefined && (
              <span className="lg sl">Stop-loss {fmtPrice(selection.signal.stopLoss, selection.pair)}</span>
            )}
            {selection.signal.takeProfit !== undefined && (
              <span className="lg tp">Take-profit {fmtPrice(selection.signal.takeProfit, selection.pair)}</span>
            )}
          </div>
        ) : (
          <div className="legend muted">Click a signal card to draw its entry, stop-loss and take-profit.</div>
        )}
      </section>
      <OpenPositions compact />
    </div>
  );
}

function MarketStrip() {
  const rows = useStore(market);
  if (!rows.length) return null;
  return (
    <div className="strip" data-testid="market-strip">
      {rows.map((r) => (
        <span key={r.pair} className="strip-item" data-testid={`market-${pairCode(r.pair)}`}>
          <b>{r.pair}</b> {fmtPrice(r.price, r.pair)}{" "}
          <span className={r.change > 0 ? "up" : r.change < 0 ? "down" : "flat"}>
            {/* rounded first, so a tiny fall reads 0.00%, not -0.00% */}
            {Number(fmtNum(r.changePercent, 2)) > 0 ? "+" : ""}
            {fmtNum(r.changePercent != null && Math.abs(r.changePercent) < 0.005 ? 0 : r.changePercent, 2)}%
          </span>
        </span>
      ))}
    </div>
  );
}

interface CardState {
  signal?: Signal;
  loading: boolean;
  error?: string;
  missing?: boolean;
}

function SignalBoard() {
  const app = useApp();
  // Wait for the preferences: they say which pairs to show.
  const followed = app.prefs ? followedPairs(app) : [];
  const key = followed.map((p) => `${p.pair}@${defaultTimeframe(p, app.prefs)}`).join(",");
  const [cards, setCards] = useState<Record<string, CardState>>({});
  const [reload, setReload] = useState(0);

  useEffect(() => {
    if (!key) return;
    let alive = true;
    let retry: ReturnType<typeof setTimeout> | undefined;
    const entries = key.split(",").map((k) => k.split("@") as [string, Tf]);
    setCards((prev) => Object.fromEntries(entries.map(([p]) => [p, { ...prev[p], loading: true }])));
    let failed = false;
    Promise.all(
      entries.map(async ([pair, tf]) => {
        try {
          const r = await api<{ signal: Record<string, unknown> }>(`/api/v1/trading/signal/${pairCode(pair)}`, {
            query: { timeframe: tf },
          });
          const s = signalFromRest(r.signal);
          live.noteSignal(s.id);
          if (alive)
            setCards((c) => {
              const cur = c[pair]?.signal;
              // A live signal may have arrived meanwhile: keep the newer.
              const keep = cur && cur.timeframe === s.timeframe && cur.createTime > s.createTime ? cur : s;
              return { ...c, [pair]: { signal: keep, loading: false } };
            });
        } catch (e) {
          const missing = e instanceof ApiError && e.status === 404;
          if (!missing) failed = true;
          if (alive)
            setCards((c) => ({
              ...c,
              [pair]: {
                signal: c[pair]?.signal,
                loading: false,
                missing,
                error: missing ? undefined : `${describeError(e, "Signal service")} — retrying`,
              },
            }));
        }
      }),
    ).then(() => {
      if (alive && failed) retry = setTimeout(() => setReload((n) => n + 1), 10000);
    });
    return () => {
      alive = false;
      clearTimeout(retry);
    };
  }, [key, reload]);

  // Live signals replace the card of their pair when they are of its timeframe.
  const keyRef = useRef(key);
  keyRef.current = key;
  useEffect(
    () =>
      signalEvents.on((s) => {
        const tf = keyRef.current
          .split(",")
          .map((k) => k.split("@"))
          .find(([p]) => p === s.pair)?.[1];
        if (tf !== s.timeframe) return;
        setCards((c) => ({ ...c, [s.pair]: { signal: s, loading: false } }));
      }),
    [],
  );

  // A selected card follows its new signals (a signal picked from the history stays put).
  const { selection, select } = app;
  const previous = useRef<Record<string, string | undefined>>({});
  useEffect(() => {
    const sel = selection.signal;
    for (const [pair, c] of Object.entries(cards)) {
      const before = previous.current[pair];
      const s = c.signal;
      if (s && before && s.id !== before && sel?.id === before && selection.pair === pair)
        select({ pair, timeframe: s.timeframe, signal: s });
    }
    previous.current = Object.fromEntries(Object.entries(cards).map(([p, c]) => [p, c.signal?.id]));
  }, [cards, selection, select]);

  if (!followed.length && app.pairsError) {
    return (
      <section className="board" data-testid="signal-board">
        <div className="empty panel" data-testid="board-error">
          {describeError(app.pairsError, "Signal service")} — retrying
        </div>
      </section>
    );
  }
  if (!followed.length && ((!app.pairs.length && !app.pairsError) || !app.prefs)) {
    return (
      <section className="board" data-testid="signal-board">
        <div className="empty">
          <span className="spinner" aria-hidden /> Loading your pairs…
        </div>
      </section>
    );
  }
  if (!followed.length) {
    return (
      <section className="board" data-testid="signal-board">
        <div className="empty panel">
          You follow no pairs with signals.{" "}
          <a href="/settings" onClick={(e) => (e.preventDefault(), app.navigate("/settings"))}>
            Choose pairs in Settings
          </a>
          .
        </div>
      </section>
    );
  }
  return (
    <section className="board" data-testid="signal-board">
      {followed.map((p) => (
        <SignalCard key={p.pair} info={p} tf={defaultTimeframe(p, app.prefs)} state={cards[p.pair] ?? { loading: true }} />
      ))}
    </section>
  );
}

const STRENGTH: Record<string, string> = { weak: "Weak", moderate: "Moderate", strong: "Strong", very_strong: "Very strong" };

function SignalCard({ info, tf, state }: { info: PairInfo; tf: Tf; state: CardState }) {
  const { selection, select } = useApp();
  const now = useNow(1000);
  const s = state.signal;
  const code = pairCode(info.pair);
  const selected = selection.pair === info.pair && selection.signal?.id === s?.id && !!s;
  const tick = useStore(quotes)[info.pair];
  const board = useStore(market).find((r) => r.pair === info.pair);
  const q = tick ?? (board?.price ? { price: board.price } : undefined);
  useEffect(() => live.watchPrice(info.pair), [info.pair]);
  const onSelect = () => select({ pair: info.pair, timeframe: s?.timeframe ?? tf, signal: s });
  return (
    <article
      className={`card signal-card action-border-${s?.action ?? "none"}${selected ? " selected" : ""}`}
      data-testid={`signal-card-${code}`}
      data-action={s?.action ?? ""}
      data-signal-id={s?.id ?? ""}
      onClick={onSelect}
      onKeyDown={(e) => {
        if ((e.key === "Enter" || e.key === " ") && e.target === e.currentTarget) {
          e.preventDefault();
          onSelect();
        }
      }}
      tabIndex={0}
      role="button"
      aria-pressed={selected}
    >
      <header className="card-head">
        <div>
          <div className="pair">{info.pair}</div>
          <div className="muted small-text">
            {s?.timeframe ?? tf} · {q ? <span data-testid={`signal-price-${code}`}>{fmtPrice(q.price, info.pair)}</span> : "—"}
          </div>
        </div>
        {s ? (
          <span className={`badge big action-${s.action}`} data-testid={`signal-action-${code}`}>
            {s.action.toUpperCase()}
          </span>
        ) : null}
      </header>
      {state.loading && !s ? (
        <div className="card-body muted">
          <span className="spinner" aria-hidden /> Loading…
        </div>
      ) : state.error && !s ? (
        <div className="card-body banner error" data-testid={`signal-error-${code}`}>
          {state.error}
        </div>
      ) : !s ? (
        <div className="card-body muted" data-testid={`signal-empty-${code}`}>
          No {tf} signal yet — one comes at the next candle close.
        </div>
      ) : (
        <>
          <div className="conf">
            <div className="conf-top">
              <span>Confidence</span>
              <b data-testid={`signal-confidence-${code}`}>{fmtPct(s.confidence)}</b>
            </div>
            <div className="bar">
              <span className={`fill action-bg-${s.action}`} style={{ width: `${Math.round(s.confidence * 100)}%` }} />
            </div>
          </div>
          <dl className="levels">
            <div>
              <dt>Entry</dt>
              <dd data-testid={`signal-entry-${code}`}>{fmtPrice(s.entryPrice, s.pair)}</dd>
            </div>
            <div>
              <dt>Stop-loss</dt>
              <dd className="down" data-testid={`signal-sl-${code}`}>
                {fmtPrice(s.stopLoss, s.pair)}
              </dd>
            </div>
            <div>
              <dt>Take-profit</dt>
              <dd className="up" data-testid={`signal-tp-${code}`}>
                {fmtPrice(s.takeProfit, s.pair)}
              </dd>
            </div>
            <div>
              <dt>Risk:reward</dt>
              <dd data-testid={`signal-rr-${code}`}>{s.riskReward !== undefined ? `1:${fmtNum(s.riskReward, 1)}` : "—"}</dd>
            </div>
          </dl>
          <div className="card-meta">
            <span className={`badge strength-${s.strength}`} data-testid={`signal-strength-${code}`}>
              {STRENGTH[s.strength]}
            </span>
            <span
              className={`badge ${s.source === "model" ? "src-model" : "src-tech"}`}
              data-testid={`signal-source-${code}`}
              title={s.source === "model" ? s.model : "Technical-indicator rules (the model was unavailable or does not cover this series)"}
            >
              {s.source === "model" ? `Model · ${s.model}` : "Technical fallback"}
            </span>
            <span className="muted age" data-testid={`signal-age-${code}`} title={`Created ${s.createTime}; candle closed ${s.candleTime}`}>
              {timeAgo(s.createTime, now)}
            </span>
          </div>
          <OpenFromSignal signal={s} />
        </>
      )}
    </article>
  );
}

/** One click opens a position that follows the signal; the idempotency key is made per
 * intent, so a double click (or a retry after a network error) opens ONE position. */
function OpenFromSignal({ signal }: { signal: Signal }) {
  const [lots, setLots] = useState("0.1");
  const [pending, setPending] = useState(false);
  const [err, setErr] = useState<ApiError | null>(null);
  const keyRef = useRef<{ key: string; for: string } | null>(null);
  const inflight = useRef(false);
  const code = pairCode(signal.pair);
  const hold = signal.action === "hold";
  const intent = `${signal.id}|${lots}`;

  const open = async (e: React.MouseEvent) => {
    e.stopPropagation();
    if (inflight.current || hold) return; // a ref: a double click is refused before React re-renders
    inflight.current = true;
    if (!keyRef.current || keyRef.current.for !== intent) keyRef.current = { key: crypto.randomUUID(), for: intent };
    setPending(true);
    setErr(null);
    try {
      const r = await api<{ position: Position }>("/api/v1/positions", {
        method: "POST",
        body: {
          pair: signal.pair,
          side: signal.action === "buy" ? "TRADE_ACTION_BUY" : "TRADE_ACTION_SELL",
          lotSize: lots.trim(),
          stopLoss: signal.stopLoss !== undefined ? signal.stopLoss.toFixed(priceDigits(signal.pair)) : "",
          takeProfit: signal.takeProfit !== undefined ? signal.takeProfit.toFixed(priceDigits(signal.pair)) : "",
          signalId: signal.id,
          idempotencyKey: keyRef.current.key,
        },
      });
      keyRef.current = null; // done: the next click is a new intent
      openedHere.add(r.position.id); // its live "opened" notification would say it twice
      toast(signal.action === "buy" ? "buy" : "sell", `Opened ${signal.action.toUpperCase()} ${signal.pair}`, `${r.position.lotSize} lots at ${r.position.entryPrice}`);
      bumpPositions();
    } catch (e2) {
      const apiErr = e2 instanceof ApiError ? e2 : new ApiError(0, "ERROR", String(e2));
      // A refused request will be refused again: the next click is a new intent.
      if (apiErr.status >= 400 && apiErr.status < 500) keyRef.current = null;
      setErr(apiErr);
    } finally {
      inflight.current = false;
      setPending(false);
    }
  };

  const fieldMsgs = err ? Object.entries(err.fields).map(([f, d]) => `${f === "lotSize" ? "Lot size" : f}: ${d}`) : [];
  return (
    <div className="open-form" onClick={(e) => e.stopPropagation()}>
      <label className="lots">
        <span>Lots</span>
        <input
          value={lots}
          inputMode="decimal"
          onChange={(e) => setLots(e.target.value)}
          className={err?.fields.lotSize ? "invalid" : ""}
          data-testid="lot-size-input"
          aria-label={`Lot size for ${signal.pair}`}
          disabled={hold}
        />
      </label>
      <button
        className={`primary open-btn action-bg-${signal.action}`}
        disabled={pending || hold}
        onClick={open}
        data-testid="open-position-button"
        data-pair={code}
        title={hold ? "HOLD: nothing to open" : "Open a position following this signal at the market price"}
      >
        {pending ? <span className="spinner" aria-hidden /> : null}
        {hold ? "No trade" : pending ? "Opening…" : `Open ${signal.action.toUpperCase()}`}
      </button>
      {err && (
        <div className="field-error block" role="alert" data-testid="open-position-error">
          {fieldMsgs.length ? fieldMsgs.join(" · ") : err.message}
        </div>
      )}
    </div>
  );
}
