// Pure helpers: pair and enum forms, pip and PnL math, number and time formatting.
// No DOM, no React: unit-tested in format.test.ts.

export type Action = "buy" | "sell" | "hold";
export type Strength = "weak" | "moderate" | "strong" | "very_strong";
export type Tf = "15m" | "1h" | "4h" | "1d";

export const TIMEFRAMES: Tf[] = ["15m", "1h", "4h", "1d"];

const TF_ENUM: Record<string, Tf> = {
  TIMEFRAME_M15: "15m",
  TIMEFRAME_H1: "1h",
  TIMEFRAME_H4: "4h",
  TIMEFRAME_D1: "1d",
};
const TF_SECONDS: Record<Tf, number> = { "15m": 900, "1h": 3600, "4h": 14400, "1d": 86400 };

/** "TIMEFRAME_H1" | "1h" | "H1" → "1h" (undefined when unknown). */
export function tfFromAny(value: string | null | undefined): Tf | undefined {
  if (!value) return undefined;
  if (value in TF_ENUM) return TF_ENUM[value];
  const v = value.toLowerCase();
  if ((TIMEFRAMES as string[]).includes(v)) return v as Tf;
  const short: Record<string, Tf> = { m15: "15m", h1: "1h", h4: "4h", d1: "1d" };
  return short[v];
}

export function tfToEnum(tf: Tf): string {
  return Object.keys(TF_ENUM).find((k) => TF_ENUM[k] === tf) ?? "TIMEFRAME_H1";
}

export function tfSeconds(tf: Tf): number {
  return TF_SECONDS[tf];
}

/** "TRADE_ACTION_BUY" | "buy" → "buy". */
export function actionFromAny(value: string | null | undefined): Action {
  const v = (value ?? "").toLowerCase().replace("trade_action_", "");
  return v === "buy" || v === "sell" ? v : "hold";
}

export function strengthFromAny(value: string | null | undefined): Strength {
  const v = (value ?? "").toLowerCase().replace("signal_strength_", "");
  return (["weak", "moderate", "strong", "very_strong"] as string[]).includes(v) ? (v as Strength) : "weak";
}

/** "EUR/USD" → "EURUSD" (the URL and testid form). */
export function pairCode(pair: string): string {
  return pair.replace(/[^A-Za-z]/g, "").toUpperCase();
}

/** "EURUSD" | "eur-usd" | "EUR/USD" → "EUR/USD". */
export function pairSlash(pair: string): string {
  const c = pairCode(pair);
  return c.length === 6 ? `${c.slice(0, 3)}/${c.slice(3)}` : pair;
}

/** 0.01 when the quote currency is JPY, else 0.0001 (as position_svc). */
export function pipSize(pair: string): number {
  return pairCode(pair).endsWith("JPY") ? 0.01 : 0.0001;
}

/** Digits to show a price of `pair` with: one more than the pip. */
export function priceDigits(pair: string): number {
  return pipSize(pair) === 0.01 ? 3 : 5;
}

export function sideSign(side: string): 1 | -1 {
  return actionFromAny(side) === "sell" ? -1 : 1;
}

/** Signed pips of a position at `price`: (price - entry) / pipSize, negated for SELL. */
export function pipsAt(pair: string, side: string, entry: number, price: number): number {
  return (sideSign(side) * (price - entry)) / pipSize(pair);
}

/** PnL in the quote currency: (price - entry) x lots x 100,000, negated for SELL. */
export function pnlAt(side: string, entry: number, price: number, lots: number): number {
  return sideSign(side) * (price - entry) * lots * 100000;
}

export function fmtPrice(value: number | string | null | undefined, pair = "EUR/USD"): string {
  if (value === null || value === undefined || value === "") return "—";
  const n = typeof value === "string" ? Number(value) : value;
  if (!Number.isFinite(n)) return "—";
  return n.toFixed(priceDigits(pair));
}

export function fmtPips(value: number | string | null | undefined): string {
  if (value === null || value === undefined || value === "") return "—";
  const n = typeof value === "string" ? Number(value) : value;
  if (!Number.isFinite(n)) return "—";
  const r = Math.round(n * 10) / 10;
  return `${r > 0 ? "+" : ""}${r.toFixed(1)}`;
}

export function fmtMoney(value: number | string | null | undefined, currency = "USD"): string {
  if (value === null || value === undefined || value === "") return "—";
  const n = typeof value === "string" ? Number(value) : value;
  if (!Number.isFinite(n)) return "—";
  const sign = n > 0 ? "+" : n < 0 ? "−" : "";
  const abs = Math.abs(n).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  return `${sign}${abs} ${currency}`;
}

export function fmtPct(value: number | null | undefined, digits = 0): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  return `${(value * 100).toFixed(digits)}%`;
}

export function fmtNum(value: number | null | undefined, digits = 2): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  return value.toFixed(digits);
}

/** "just now", "42 s ago", "3 min ago", "5 h ago", "2 d ago". */
export function timeAgo(iso: string | null | undefined, now: number = Date.now()): string {
  if (!iso) return "—";
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return "—";
  const s = Math.round((now - t) / 1000);
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ago`;
  return `${Math.floor(h / 24)} d ago`;
}

export function fmtTime(iso: string | null | undefined): string {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "—";
  return d.toISOString().replace("T", " ").slice(0, 16) + " UTC";
}

/** The start (unix seconds) of the `tf` bar a quote at `iso` belongs to. A quote exactly
 * on a boundary closes the bar before it (the replay quotes each bar at its close). */
export function barStart(iso: string, tf: Tf): number {
  const t = Date.parse(iso) / 1000;
  const len = tfSeconds(tf);
  return Math.floor((t - 0.001) / len) * len;
}

/** Proto3 JSON "snake_case" field path → the camelCase name forms use. */
export function camelField(field: string): string {
  return field.replace(/^.*\./, "").replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}
