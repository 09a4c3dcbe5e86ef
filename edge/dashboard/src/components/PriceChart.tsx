import { useEffect, useRef, useState } from "react";
import {
  CandlestickSeries,
  ColorType,
  LineSeries,
  createChart,
  createSeriesMarkers,
  LineStyle,
  type CandlestickData,
  type IChartApi,
  type IPriceLine,
  type ISeriesApi,
  type ISeriesMarkersPluginApi,
  type SeriesMarker,
  type Time,
  type UTCTimestamp,
} from "lightweight-charts";
import { api, ApiError, describeError } from "../api";
import { barStart, pairCode, priceDigits, tfSeconds, type Tf } from "../format";
import { live, quotes, signalEvents } from "../live";
import { signalFromRest, type Signal } from "../types";

interface Candle {
  openTime: string;
  open: number;
  high: number;
  low: number;
  close: number;
}

export const CHART_COLORS = {
  bg: "#0f1623",
  text: "#9aa7bd",
  grid: "#1c2636",
  up: "#22c55e",
  down: "#ef4444",
};

export function baseChartOptions() {
  return {
    autoSize: true,
    layout: {
      background: { type: ColorType.Solid, color: CHART_COLORS.bg },
      textColor: CHART_COLORS.text,
      // lightweight-charts' licence asks for the TradingView attribution: keep it on.
      attributionLogo: true,
      fontFamily: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif",
    },
    grid: { vertLines: { color: CHART_COLORS.grid }, horzLines: { color: CHART_COLORS.grid } },
    rightPriceScale: { borderColor: CHART_COLORS.grid },
    timeScale: { borderColor: CHART_COLORS.grid, timeVisible: true, secondsVisible: false },
    crosshair: { mode: 0 },
  } as const;
}

function markerFor(s: Signal): SeriesMarker<Time> | null {
  if (s.action === "hold" || !s.candleTime) return null;
  const time = (Date.parse(s.candleTime) / 1000 - tfSeconds(s.timeframe)) as UTCTimestamp;
  const buy = s.action === "buy";
  return {
    time,
    position: buy ? "belowBar" : "aboveBar",
    color: buy ? CHART_COLORS.up : CHART_COLORS.down,
    shape: buy ? "arrowUp" : "arrowDown",
    size: 0.8,
    id: s.id,
  };
}

export default function PriceChart({ pair, timeframe, signal }: { pair: string; timeframe: Tf; signal?: Signal }) {
  const box = useRef<HTMLDivElement>(null);
  const chartRef = useRef<IChartApi | null>(null);
  const candleRef = useRef<ISeriesApi<"Candlestick"> | null>(null);
  const lineRef = useRef<ISeriesApi<"Line"> | null>(null);
  // The series drawn: candles, or a line for a closes-only series (daily fixings).
  const seriesRef = useRef<ISeriesApi<"Candlestick"> | ISeriesApi<"Line"> | null>(null);
  const markersRef = useRef<ISeriesMarkersPluginApi<Time> | null>(null);
  const candleMarkers = useRef<ISeriesMarkersPluginApi<Time> | null>(null);
  const lineMarkers = useRef<ISeriesMarkersPluginApi<Time> | null>(null);
  const closesOnly = useRef(false);
  const lastBar = useRef<CandlestickData<UTCTimestamp> | null>(null);
  const markerList = useRef<SeriesMarker<Time>[]>([]);
  const lines = useRef<{ on: ISeriesApi<"Candlestick"> | ISeriesApi<"Line">; line: IPriceLine }[]>([]);
  const [status, setStatus] = useState<{ loading: boolean; error?: string; empty?: boolean; kind?: string }>({
    loading: true,
  });
  const [reloadTick, setReloadTick] = useState(0);

  // The chart itself, once.
  useEffect(() => {
    if (!box.current) return;
    const chart = createChart(box.current, baseChartOptions());
    const series = chart.addSeries(CandlestickSeries, {
      upColor: CHART_COLORS.up,
      downColor: CHART_COLORS.down,
      borderVisible: false,
      wickUpColor: CHART_COLORS.up,
      wickDownColor: CHART_COLORS.down,
    });
    const line = chart.addSeries(LineSeries, { color: "#60a5fa", lineWidth: 2 });
    chartRef.current = chart;
    candleRef.current = series;
    lineRef.current = line;
    seriesRef.current = series;
    candleMarkers.current = createSeriesMarkers(series, []);
    lineMarkers.current = createSeriesMarkers(line, []);
    markersRef.current = candleMarkers.current;
    return () => {
      chart.remove();
      chartRef.current = null;
      seriesRef.current = null;
      candleRef.current = null;
      lineRef.current = null;
      markersRef.current = null;
    };
  }, []);

  // Candles and signal markers of the pair and timeframe.
  useEffect(() => {
    let alive = true;
    let retry: ReturnType<typeof setTimeout> | undefined;
    const candles = candleRef.current;
    const line = lineRef.current;
    if (!candles || !line) return;
    const digits = priceDigits(pair);
    for (const x of [candles, line]) {
      x.applyOptions({ priceFormat: { type: "price", precision: digits, minMove: 1 / 10 ** digits } });
      x.setData([]);
    }
    candleMarkers.current?.setMarkers([]);
    lineMarkers.current?.setMarkers([]);
    lastBar.current = null;
    markerList.current = [];
    setStatus({ loading: true });
    (async () => {
      try {
        const [c, s] = await Promise.all([
          api<{ candles?: Candle[]; priceKind?: string }>(`/api/v1/market/candles/${pairCode(pair)}`, {
            query: { timeframe, limit: 300 },
          }),
          api<{ signals?: Record<string, unknown>[] }>("/api/v1/trading/signals", {
            query: { pair, timeframe, pageSize: 300 },
          }).catch(() => ({ signals: [] })),
        ]);
        if (!alive) return;
        const bars = (c.candles ?? []).map((k) => ({
          time: (Date.parse(k.openTime) / 1000) as UTCTimestamp,
          open: k.open,
          high: k.high,
          low: k.low,
          close: k.close,
        }));
        closesOnly.current = c.priceKind === "PRICE_KIND_CLOSES_ONLY";
        if (closesOnly.current) {
          line.setData(bars.map((b) => ({ time: b.time, value: b.close })));
          seriesRef.current = line;
          markersRef.current = lineMarkers.current;
        } else {
          candles.setData(bars);
          seriesRef.current = candles;
          markersRef.current = candleMarkers.current;
        }
        lastBar.current = bars.length ? { ...bars[bars.length - 1] } : null;
        const first = bars.length ? bars[0].time : 0;
        markerList.current = (s.signals ?? [])
          .map((r) => markerFor(signalFromRest(r)))
          .filter((m): m is SeriesMarker<Time> => !!m && (m.time as number) >= first)
          .sort((a, b) => (a.time as number) - (b.time as number));
        markersRef.current?.setMarkers(markerList.current);
        chartRef.current?.timeScale().fitContent();
        setStatus({
          loading: false,
          empty: bars.length === 0,
          kind: c.priceKind === "PRICE_KIND_CLOSES_ONLY" ? "Daily fixings (closes only)" : undefined,
        });
      } catch (e) {
        if (!alive) return;
        const msg =
          e instanceof ApiError && e.status === 404
            ? `No ${timeframe} data for ${pair}.`
            : `${describeError(e, "Market data")} — retrying`;
        setStatus({ loading: false, error: msg });
        if (!(e instanceof ApiError && e.status === 404)) retry = setTimeout(() => setReloadTick((t) => t + 1), 10000);
      }
    })();
    return () => {
      alive = false;
      clearTimeout(retry);
    };
  }, [pair, timeframe, reloadTick]);

  // Live quotes move the last bar, or start a new one.
  useEffect(() => {
    const unwatch = live.watchPrice(pair);
    let prevTs = "";
    const off = quotes.subscribe(() => {
      const q = quotes.get()[pair];
      const series = seriesRef.current;
      if (!q || !series || q.timestamp === prevTs) return;
      prevTs = q.timestamp;
      const time = barStart(q.timestamp, timeframe) as UTCTimestamp;
      const last = lastBar.current;
      let bar: CandlestickData<UTCTimestamp>;
      if (last && time < last.time) return; // older than what is drawn
      if (last && time === last.time) {
        bar = {
          ...last,
          high: Math.max(last.high, q.high ?? q.price, q.price),
          low: Math.min(last.low, q.low ?? q.price, q.price),
          close: q.price,
        };
      } else {
        const open = last ? last.close : q.price;
        bar = { time, open, high: Math.max(open, q.price), low: Math.min(open, q.price), close: q.price };
      }
      lastBar.current = bar;
      try {
        if (closesOnly.current) (series as ISeriesApi<"Line">).update({ time: bar.time, value: bar.close });
        else (series as ISeriesApi<"Candlestick">).update(bar);
      } catch {
        /* a quote from an earlier replay lap: ignore */
      }
    });
    return () => {
      off();
      unwatch();
    };
  }, [pair, timeframe]);

  // New signals of this series become markers.
  useEffect(
    () =>
      signalEvents.on((s) => {
        if (s.pair !== pair || s.timeframe !== timeframe) return;
        const m = markerFor(s);
        if (!m) return;
        markerList.current = [...markerList.current.filter((x) => x.time !== m.time), m].sort(
          (a, b) => (a.time as number) - (b.time as number),
        );
        markersRef.current?.setMarkers(markerList.current);
      }),
    [pair, timeframe],
  );

  // The selected signal's entry, stop-loss and take-profit.
  useEffect(() => {
    for (const l of lines.current) {
      try {
        l.on.removePriceLine(l.line);
      } catch {
        /* the chart is gone */
      }
    }
    lines.current = [];
    const series = seriesRef.current;
    if (!series || status.loading) return;
    if (!signal || signal.pair !== pair) return;
    const add = (price: number | undefined, title: string, color: string, style: LineStyle) => {
      if (price === undefined || !Number.isFinite(price)) return;
      lines.current.push({
        on: series,
        line: series.createPriceLine({ price, title, color, lineWidth: 1, lineStyle: style, axisLabelVisible: true }),
      });
    };
    add(signal.entryPrice, "Entry", "#60a5fa", LineStyle.Solid);
    add(signal.stopLoss, "Stop-loss", CHART_COLORS.down, LineStyle.Dashed);
    add(signal.takeProfit, "Take-profit", CHART_COLORS.up, LineStyle.Dashed);
  }, [signal, pair, status.loading]);

  return (
    <div className="chart-wrap" data-testid="price-chart" data-pair={pairCode(pair)} data-timeframe={timeframe}>
      <div ref={box} className="chart" />
      {status.loading && (
        <div className="chart-overlay" data-testid="chart-loading">
          <span className="spinner" aria-hidden /> Loading {pair} {timeframe}…
        </div>
      )}
      {!status.loading && status.error && (
        <div className="chart-overlay error" data-testid="chart-error">
          {status.error}
        </div>
      )}
      {!status.loading && !status.error && status.empty && (
        <div className="chart-overlay" data-testid="chart-empty">
          No candles for {pair} {timeframe} yet.
        </div>
      )}
      {status.kind && <div className="chart-note muted">{status.kind}</div>}
    </div>
  );
}
