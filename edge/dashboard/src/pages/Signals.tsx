import { useState } from "react";
import { api, describeError } from "../api";
import { fmtNum, fmtPct, fmtPrice, fmtTime, tfFromAny, TIMEFRAMES } from "../format";
import { useApp, useAsync } from "../hooks";
import { signalFromRest } from "../types";

export default function SignalsPage() {
  const { pairs, navigate, select } = useApp();
  const [pair, setPair] = useState("");
  const [timeframe, setTimeframe] = useState("");
  const [action, setAction] = useState("");
  const [pageSize, setPageSize] = useState(25);
  const [tokens, setTokens] = useState<string[]>([""]);
  const token = tokens[tokens.length - 1];
  const { data, error, loading, reload } = useAsync(
    () =>
      api<{ signals?: Record<string, unknown>[]; nextPageToken?: string }>("/api/v1/trading/signals", {
        query: { pair: pair || undefined, timeframe: timeframe || undefined, action: action || undefined, pageSize, pageToken: token || undefined },
      }),
    [pair, timeframe, action, pageSize, token],
  );
  const rows = (data?.signals ?? []).map(signalFromRest);
  const resetPaging = () => setTokens([""]);

  return (
    <section className="panel" data-testid="signals-page">
      <div className="panel-head wrap">
        <h2>Signal history</h2>
        <div className="filters">
          <select
            value={pair}
            onChange={(e) => (setPair(e.target.value), resetPaging())}
            data-testid="filter-pair"
            aria-label="Pair"
          >
            <option value="">All pairs</option>
            {pairs
              .filter((p) => (p.timeframes ?? []).length)
              .map((p) => (
                <option key={p.pair} value={p.pair}>
                  {p.pair}
                </option>
              ))}
          </select>
          <select
            value={timeframe}
            onChange={(e) => (setTimeframe(e.target.value), resetPaging())}
            data-testid="filter-timeframe"
            aria-label="Timeframe"
          >
            <option value="">All timeframes</option>
            {TIMEFRAMES.map((t) => (
              <option key={t} value={t}>
                {t}
              </option>
            ))}
          </select>
          <select
            value={action}
            onChange={(e) => (setAction(e.target.value), resetPaging())}
            data-testid="filter-action"
            aria-label="Action"
          >
            <option value="">All actions</option>
            <option value="buy">Buy</option>
            <option value="sell">Sell</option>
            <option value="hold">Hold</option>
          </select>
          <select
            value={pageSize}
            onChange={(e) => (setPageSize(Number(e.target.value)), resetPaging())}
            data-testid="filter-page-size"
            aria-label="Rows per page"
          >
            {[10, 25, 50, 100].map((n) => (
              <option key={n} value={n}>
                {n} / page
              </option>
            ))}
          </select>
        </div>
      </div>
      {error ? (
        <div className="banner error" data-testid="signals-error">
          {describeError(error, "Signal service")} — retrying{" "}
          <button className="small ghost" onClick={reload}>
            Retry now
          </button>
        </div>
      ) : null}
      {loading && !data ? (
        <div className="empty" data-testid="signals-loading">
          <span className="spinner" aria-hidden /> Loading signals…
        </div>
      ) : rows.length === 0 && !error ? (
        <div className="empty" data-testid="signals-empty">
          No signals match these filters.
        </div>
      ) : rows.length ? (
        <div className={`table-scroll${loading ? " stale" : ""}`}>
          <table className="table" data-testid="signals-table">
            <thead>
              <tr>
                <th>Time (candle close)</th>
                <th>Pair</th>
                <th>TF</th>
                <th>Action</th>
                <th className="num">Confidence</th>
                <th className="num">Entry</th>
                <th className="num">Stop-loss</th>
                <th className="num">Take-profit</th>
                <th className="num">R:R</th>
                <th>Source</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((s) => (
                <tr
                  key={s.id}
                  data-testid={`signal-row-${s.id}`}
                  className="clickable"
                  title="Show on the dashboard chart"
                  onClick={() => {
                    select({ pair: s.pair, timeframe: tfFromAny(s.timeframe) ?? "1h", signal: s });
                    navigate("/");
                  }}
                >
                  <td className="nowrap muted">{fmtTime(s.candleTime)}</td>
                  <td>{s.pair}</td>
                  <td>{s.timeframe}</td>
                  <td>
                    <span className={`badge action-${s.action}`}>{s.action.toUpperCase()}</span>
                  </td>
                  <td className="num">{fmtPct(s.confidence)}</td>
                  <td className="num">{fmtPrice(s.entryPrice, s.pair)}</td>
                  <td className="num">{fmtPrice(s.stopLoss, s.pair)}</td>
                  <td className="num">{fmtPrice(s.takeProfit, s.pair)}</td>
                  <td className="num">{s.riskReward !== undefined ? fmtNum(s.riskReward, 1) : "—"}</td>
                  <td>
                    <span className={`badge ${s.source === "model" ? "src-model" : "src-tech"}`}>
                      {s.source === "model" ? s.model : "Technical"}
                    </span>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      <div className="pager">
        <button
          className="small ghost"
          disabled={tokens.length < 2}
          onClick={() => setTokens((t) => t.slice(0, -1))}
          data-testid="signals-prev"
        >
          ← Newer
        </button>
        <span className="muted" data-testid="signals-page-number">
          Page {tokens.length}
        </span>
        <button
          className="small ghost"
          disabled={!data?.nextPageToken}
          onClick={() => setTokens((t) => [...t, data!.nextPageToken!])}
          data-testid="signals-next"
        >
          Older →
        </button>
      </div>
    </section>
  );
}
