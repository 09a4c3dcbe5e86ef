import { useEffect, useRef, useState } from "react";
import { AreaSeries, createChart, type UTCTimestamp } from "lightweight-charts";
import { api, describeError } from "../api";
import { baseChartOptions } from "../components/PriceChart";
import { fmtMoney, fmtNum, fmtPct, fmtPips } from "../format";
import { positionsVersion, useAsync } from "../hooks";
import { useStore } from "../live";
import type { Performance } from "../types";

const PERIODS = [
  { id: "all", label: "All time" },
  { id: "month", label: "30 days" },
  { id: "week", label: "7 days" },
  { id: "day", label: "24 h" },
];

export default function PerformancePage() {
  const [period, setPeriod] = useState("all");
  const version = useStore(positionsVersion);
  const { data, error, loading, reload } = useAsync(
    () => api<{ performance: Performance }>("/api/v1/positions/performance", { query: { period } }),
    [period, version],
  );
  const perf = data?.performance;
  const cur = perf?.currency ?? "USD";
  return (
    <div className="stack" data-testid="performance-page">
      <section className="panel">
        <div className="panel-head wrap">
          <h2>Performance</h2>
          <div className="seg" role="group" aria-label="Period">
            {PERIODS.map((p) => (
              <button key={p.id} className={period === p.id ? "active" : ""} onClick={() => setPeriod(p.id)} data-testid={`perf-period-${p.id}`}>
                {p.label}
              </button>
            ))}
          </div>
        </div>
        {error ? (
          <div className="banner error" data-testid="perf-error">
            {describeError(error, "Position service")} — retrying{" "}
            <button className="small ghost" onClick={reload}>
              Retry now
            </button>
          </div>
        ) : null}
        {loading && !perf ? (
          <div className="empty">
            <span className="spinner" aria-hidden /> Loading performance…
          </div>
        ) : perf ? (
          <>
            <div className="stats">
              <Stat label="Trades" value={String(perf.trades)} testid="perf-trades" sub={`${perf.wins} W · ${perf.losses} L · ${perf.breakevens} BE`} />
              <Stat label="Win rate" value={fmtPct(perf.winRate, 1)} testid="perf-win-rate" />
              <Stat label="Profit factor" value={perf.profitFactor !== undefined ? fmtNum(perf.profitFactor, 2) : perf.trades ? "∞" : "—"} testid="perf-profit-factor" />
              <Stat label="Total pips" value={fmtPips(perf.totalPips)} testid="perf-total-pips" tone={Number(perf.totalPips)} />
              <Stat label="Total PnL" value={fmtMoney(perf.totalPnl, cur)} testid="perf-total-pnl" tone={Number(perf.totalPnl)} />
              <Stat label="Max drawdown" value={fmtMoney(-Number(perf.maxDrawdown || 0), cur)} testid="perf-max-drawdown" tone={-Number(perf.maxDrawdown || 0)} />
              {perf.averageRiskReward !== undefined && (
                <Stat label="Avg planned R:R" value={`1:${fmtNum(perf.averageRiskReward, 2)}`} testid="perf-avg-rr" />
              )}
            </div>
            {perf.unconvertedTrades ? (
              <p className="muted small-text">
                {perf.unconvertedTrades} trade(s) could not be converted to {cur} and are left out of money figures.
              </p>
            ) : null}
            {perf.trades === 0 ? (
              <div className="empty" data-testid="perf-empty">
                No closed trades {period === "all" ? "yet" : "in this period"}. Open a position from a signal; once it closes
                (stop-loss, take-profit or by hand) its result shows here.
              </div>
            ) : null}
          </>
        ) : null}
      </section>
      {perf && perf.trades > 0 ? (
        <>
          <section className="panel">
            <div className="panel-head">
              <h2>Equity curve</h2>
              <span className="muted">cumulative realized PnL, {cur}</span>
            </div>
            <EquityChart points={perf.equityCurve} />
          </section>
          <section className="panel">
            <div className="panel-head">
              <h2>By pair</h2>
            </div>
            <div className="table-scroll">
              <table className="table" data-testid="perf-pairs">
                <thead>
                  <tr>
                    <th>Pair</th>
                    <th className="num">Trades</th>
                    <th className="num">Wins</th>
                    <th className="num">Losses</th>
                    <th className="num">Win rate</th>
                    <th className="num">Pips</th>
                    <th className="num">PnL ({cur})</th>
                  </tr>
                </thead>
                <tbody>
                  {perf.pairs.map((p) => (
                    <tr key={p.pair} data-testid={`perf-pair-${p.pair.replace("/", "")}`}>
                      <td>{p.pair}</td>
                      <td className="num">{p.trades}</td>
                      <td className="num">{p.wins}</td>
                      <td className="num">{p.losses}</td>
                      <td className="num">{fmtPct(p.winRate, 1)}</td>
                      <td className={`num ${Number(p.totalPips) >= 0 ? "up" : "down"}`}>{fmtPips(p.totalPips)}</td>
                      <td className={`num ${Number(p.totalPnl) >= 0 ? "up" : "down"}`}>{fmtMoney(p.totalPnl, cur)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </section>
        </>
      ) : null}
    </div>
  );
}

function Stat({ label, value, testid, sub, tone }: { label: string; value: string; testid: string; sub?: string; tone?: number }) {
  const cls = tone === undefined || !Number.isFinite(tone) || tone === 0 ? "" : tone > 0 ? "up" : "down";
  return (
    <div className="stat">
      <div className="stat-label">{label}</div>
      <div className={`stat-value ${cls}`} data-testid={testid}>
        {value}
      </div>
      {sub ? <div className="muted small-text">{sub}</div> : null}
    </div>
  );
}

function EquityChart({ points }: { points: Performance["equityCurve"] }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!box.current) return;
    const chart = createChart(box.current, baseChartOptions());
    const series = chart.addSeries(AreaSeries, {
      lineColor: "#60a5fa",
      topColor: "rgba(96,165,250,0.35)",
      bottomColor: "rgba(96,165,250,0.02)",
      lineWidth: 2,
      priceFormat: { type: "price", precision: 2, minMove: 0.01 },
    });
    // Times must increase strictly: trades closed in the same second get +1 s each.
    let last = 0;
    const data = points.map((p) => {
      let t = Math.floor(Date.parse(p.time) / 1000);
      if (t <= last) t = last + 1;
      last = t;
      return { time: t as UTCTimestamp, value: Number(p.cumulativePnl) };
    });
    series.setData(data);
    chart.timeScale().fitContent();
    return () => chart.remove();
  }, [points]);
  return (
    <div className="chart-wrap small" data-testid="equity-chart">
      <div ref={box} className="chart" />
    </div>
  );
}
