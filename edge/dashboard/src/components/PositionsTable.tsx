import { useEffect, useMemo, useState } from "react";
import { api, ApiError, describeError } from "../api";
import { actionFromAny, fmtMoney, fmtPips, fmtPrice, fmtTime, pairCode, pipsAt, pnlAt } from "../format";
import { bumpPositions, positionsVersion, toast, useAsync } from "../hooks";
import { live, quotes, useStore } from "../live";
import type { Position } from "../types";

function SideBadge({ side }: { side: string }) {
  const a = actionFromAny(side);
  return <span className={`badge action-${a}`}>{a.toUpperCase()}</span>;
}

function signClass(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n) || n === 0) return "flat";
  return n > 0 ? "up" : "down";
}

/** The open positions, with pips and PnL following every quote. */
export function OpenPositions({ compact = false }: { compact?: boolean }) {
  const version = useStore(positionsVersion);
  const { data, error, loading } = useAsync(
    () => api<{ positions?: Position[] }>("/api/v1/positions", { query: { status: "open", pageSize: 200 } }),
    [version],
  );
  const positions = useMemo(() => data?.positions ?? [], [data]);
  const live_ = useStore(quotes);
  const pairsKey = [...new Set(positions.map((p) => p.pair))].sort().join(",");
  useEffect(() => {
    if (!pairsKey) return;
    const offs = pairsKey.split(",").map((p) => live.watchPrice(p));
    return () => offs.forEach((o) => o());
  }, [pairsKey]);
  // A slow REST refresh too, so figures stay right when no quotes flow.
  useEffect(() => {
    const id = setInterval(bumpPositions, 60000);
    return () => clearInterval(id);
  }, []);

  const totals = positions.reduce(
    (acc, p) => {
      const q = live_[p.pair];
      const pnl = q ? pnlAt(p.side, Number(p.entryPrice), q.price, Number(p.lotSize)) : Number(p.unrealizedPnl || 0);
      acc[p.pnlCurrency || "USD"] = (acc[p.pnlCurrency || "USD"] ?? 0) + pnl;
      return acc;
    },
    {} as Record<string, number>,
  );

  return (
    <section className="panel" data-testid="open-positions">
      <div className="panel-head">
        <h2>Open positions</h2>
        <span className="muted" data-testid="open-positions-count">
          {positions.length} open
          {Object.entries(totals).map(([cur, v]) => (
            <span key={cur} className={`total ${signClass(v)}`}>
              {" "}
              · {fmtMoney(v, cur)}
            </span>
          ))}
        </span>
      </div>
      {error ? (
        <div className="banner error" data-testid="open-positions-error">
          {describeError(error, "Position service")} — retrying
        </div>
      ) : null}
      {loading && !data ? (
        <div className="empty" data-testid="open-positions-loading">
          <span className="spinner" aria-hidden /> Loading positions…
        </div>
      ) : positions.length === 0 && !error ? (
        <div className="empty" data-testid="open-positions-empty">
          No open positions. Open one from a signal card on the dashboard.
        </div>
      ) : positions.length ? (
        <div className="table-scroll">
          <table className="table stackable">
            <thead>
              <tr>
                <th>Pair</th>
                <th>Side</th>
                <th className="num">Lots</th>
                <th className="num">Entry</th>
                <th className="num">Price</th>
                <th className="num">Stop-loss</th>
                <th className="num">Take-profit</th>
                <th className="num">Pips</th>
                <th className="num">PnL</th>
                {!compact && <th>Opened</th>}
                <th />
              </tr>
            </thead>
            <tbody>
              {positions.map((p) => (
                <OpenRow key={p.id} p={p} price={live_[p.pair]?.price} compact={compact} />
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </section>
  );
}

function OpenRow({ p, price, compact }: { p: Position; price?: number; compact: boolean }) {
  const [editing, setEditing] = useState(false);
  const [sl, setSl] = useState(p.stopLoss);
  const [tp, setTp] = useState(p.takeProfit);
  const [pending, setPending] = useState<"save" | "close" | null>(null);
  const [err, setErr] = useState<ApiError | null>(null);
  const entry = Number(p.entryPrice);
  const lots = Number(p.lotSize);
  const current = price ?? (p.currentPrice ? Number(p.currentPrice) : undefined);
  const pips = price !== undefined ? pipsAt(p.pair, p.side, entry, price) : p.pips ? Number(p.pips) : undefined;
  const pnl = price !== undefined ? pnlAt(p.side, entry, price, lots) : p.unrealizedPnl ? Number(p.unrealizedPnl) : undefined;

  const save = async () => {
    setPending("save");
    setErr(null);
    try {
      await api(`/api/v1/positions/${p.id}`, {
        method: "PATCH",
        query: { updateMask: "stopLoss,takeProfit" },
        body: { stopLoss: sl.trim(), takeProfit: tp.trim() },
      });
      setEditing(false);
      toast("success", `${p.pair} levels updated`);
      bumpPositions();
    } catch (e) {
      setErr(e instanceof ApiError ? e : new ApiError(0, "ERROR", String(e)));
    } finally {
      setPending(null);
    }
  };
  const close = async () => {
    setPending("close");
    setErr(null);
    try {
      const r = await api<{ position: Position }>(`/api/v1/positions/${p.id}:close`, { method: "POST", body: {} });
      toast(
        Number(r.position?.realizedPnl) >= 0 ? "success" : "error",
        `${p.pair} closed`,
        `${fmtPips(r.position?.pips)} pips · ${fmtMoney(r.position?.realizedPnl, r.position?.pnlCurrency)}`,
      );
      bumpPositions();
    } catch (e) {
      setErr(e instanceof ApiError ? e : new ApiError(0, "ERROR", String(e)));
      setPending(null);
    }
  };

  return (
    <>
      <tr data-testid={`position-row-${p.id}`} data-pair={pairCode(p.pair)}>
        <td data-label="Pair">{p.pair}</td>
        <td data-label="Side">
          <SideBadge side={p.side} />
        </td>
        <td data-label="Lots" className="num">{p.lotSize}</td>
        <td data-label="Entry" className="num">{fmtPrice(p.entryPrice, p.pair)}</td>
        <td data-label="Price" className="num" data-testid={`price-${p.id}`}>
          {fmtPrice(current, p.pair)}
        </td>
        <td data-label="Stop-loss" className="num">
          {editing ? (
            <input
              className={`num-input${err?.fields.stopLoss ? " invalid" : ""}`}
              value={sl}
              inputMode="decimal"
              onChange={(e) => setSl(e.target.value)}
              data-testid={`sl-input-${p.id}`}
              aria-label="Stop-loss"
              placeholder="none"
            />
          ) : (
            <span data-testid={`sl-${p.id}`}>{fmtPrice(p.stopLoss, p.pair)}</span>
          )}
        </td>
        <td data-label="Take-profit" className="num">
          {editing ? (
            <input
              className={`num-input${err?.fields.takeProfit ? " invalid" : ""}`}
              value={tp}
              inputMode="decimal"
              onChange={(e) => setTp(e.target.value)}
              data-testid={`tp-input-${p.id}`}
              aria-label="Take-profit"
              placeholder="none"
            />
          ) : (
            <span data-testid={`tp-${p.id}`}>{fmtPrice(p.takeProfit, p.pair)}</span>
          )}
        </td>
        <td data-label="Pips" className={`num ${signClass(pips)}`} data-testid={`pips-${p.id}`}>
          {fmtPips(pips)}
        </td>
        <td data-label="PnL" className={`num ${signClass(pnl)}`} data-testid={`pnl-${p.id}`}>
          {fmtMoney(pnl, p.pnlCurrency || "USD")}
        </td>
        {!compact && <td data-label="Opened" className="muted nowrap">{fmtTime(p.openTime)}</td>}
        <td className="actions nowrap">
          {editing ? (
            <>
              <button className="small primary" onClick={save} disabled={pending !== null} data-testid={`save-levels-${p.id}`}>
                {pending === "save" ? "Saving…" : "Save"}
              </button>
              <button
                className="small ghost"
                onClick={() => {
                  setEditing(false);
                  setErr(null);
                  setSl(p.stopLoss);
                  setTp(p.takeProfit);
                }}
                data-testid={`cancel-edit-${p.id}`}
              >
                Cancel
              </button>
            </>
          ) : (
            <button
              className="small ghost"
              onClick={() => {
                setSl(p.stopLoss);
                setTp(p.takeProfit);
                setEditing(true);
              }}
              disabled={pending !== null}
              data-testid={`edit-levels-${p.id}`}
            >
              SL/TP
            </button>
          )}
          <button className="small danger" onClick={close} disabled={pending !== null} data-testid={`close-position-${p.id}`}>
            {pending === "close" ? "Closing…" : "Close"}
          </button>
        </td>
      </tr>
      {err && (
        <tr className="row-error">
          <td colSpan={compact ? 10 : 11} data-testid={`position-error-${p.id}`}>
            {err.fields.stopLoss || err.fields.takeProfit
              ? [err.fields.stopLoss && `Stop-loss: ${err.fields.stopLoss}`, err.fields.takeProfit && `Take-profit: ${err.fields.takeProfit}`]
                  .filter(Boolean)
                  .join(" · ")
              : err.message}
          </td>
        </tr>
      )}
    </>
  );
}

const REASONS: Record<string, string> = {
  CLOSE_REASON_TAKE_PROFIT: "Take-profit",
  CLOSE_REASON_STOP_LOSS: "Stop-loss",
  CLOSE_REASON_MANUAL: "Manual",
  CLOSE_REASON_REPLAY_RESTARTED: "Replay restarted",
};
const RESULTS: Record<string, string> = {
  POSITION_RESULT_WIN: "Win",
  POSITION_RESULT_LOSS: "Loss",
  POSITION_RESULT_BREAKEVEN: "Breakeven",
};

/** Closed trades, paged with page tokens. */
export function ClosedPositions() {
  const version = useStore(positionsVersion);
  const [tokens, setTokens] = useState<string[]>([""]);
  const token = tokens[tokens.length - 1];
  const { data, error, loading } = useAsync(
    () =>
      api<{ positions?: Position[]; nextPageToken?: string }>("/api/v1/positions", {
        query: { status: "closed", pageSize: 20, pageToken: token || undefined },
      }),
    [token, version],
  );
  const rows = data?.positions ?? [];
  return (
    <section className="panel" data-testid="closed-positions">
      <div className="panel-head">
        <h2>Closed trades</h2>
        <span className="muted">page {tokens.length}</span>
      </div>
      {error ? (
        <div className="banner error" data-testid="closed-positions-error">
          {describeError(error, "Position service")} — retrying
        </div>
      ) : null}
      {loading && !data ? (
        <div className="empty">
          <span className="spinner" aria-hidden /> Loading trades…
        </div>
      ) : rows.length === 0 && !error ? (
        <div className="empty" data-testid="closed-positions-empty">
          No closed trades yet.
        </div>
      ) : rows.length ? (
        <div className="table-scroll">
          <table className="table stackable">
            <thead>
              <tr>
                <th>Pair</th>
                <th>Side</th>
                <th className="num">Lots</th>
                <th className="num">Entry</th>
                <th className="num">Exit</th>
                <th className="num">Pips</th>
                <th className="num">PnL</th>
                <th>Result</th>
                <th>Reason</th>
                <th>Closed</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((p) => (
                <tr key={p.id} data-testid={`closed-row-${p.id}`}>
                  <td data-label="Pair">{p.pair}</td>
                  <td data-label="Side">
                    <SideBadge side={p.side} />
                  </td>
                  <td data-label="Lots" className="num">{p.lotSize}</td>
                  <td data-label="Entry" className="num">{fmtPrice(p.entryPrice, p.pair)}</td>
                  <td data-label="Exit" className="num">{fmtPrice(p.exitPrice, p.pair)}</td>
                  <td data-label="Pips" className={`num ${signClass(Number(p.pips))}`}>{fmtPips(p.pips)}</td>
                  <td data-label="PnL" className={`num ${signClass(Number(p.realizedPnl))}`} data-testid={`realized-pnl-${p.id}`}>
                    {fmtMoney(p.realizedPnl, p.pnlCurrency)}
                  </td>
                  <td data-label="Result" data-testid={`result-${p.id}`}>
                    <span className={`badge result-${(RESULTS[p.result] ?? "").toLowerCase()}`}>{RESULTS[p.result] ?? "—"}</span>
                  </td>
                  <td data-label="Reason" className="muted">{REASONS[p.closeReason] ?? "—"}</td>
                  <td data-label="Closed" className="muted nowrap">{fmtTime(p.closeTime)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      <div className="pager">
        <button className="small ghost" disabled={tokens.length < 2} onClick={() => setTokens((t) => t.slice(0, -1))} data-testid="closed-prev">
          ← Newer
        </button>
        <button
          className="small ghost"
          disabled={!data?.nextPageToken}
          onClick={() => setTokens((t) => [...t, data!.nextPageToken!])}
          data-testid="closed-next"
        >
          Older →
        </button>
      </div>
    </section>
  );
}
