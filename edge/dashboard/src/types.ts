import { actionFromAny, strengthFromAny, tfFromAny, type Action, type Strength, type Tf } from "./format";

export interface User {
  id: string;
  email: string;
  username: string;
  createTime?: string;
}

/** One signal, whichever way it arrived (REST proto JSON or the Socket.IO event). */
export interface Signal {
  id: string;
  pair: string;
  timeframe: Tf;
  action: Action;
  confidence: number;
  entryPrice: number;
  stopLoss?: number;
  takeProfit?: number;
  riskReward?: number;
  strength: Strength;
  source: "model" | "technical";
  model: string;
  candleTime: string;
  createTime: string;
  indicators: Record<string, number>;
}

type Json = Record<string, unknown>;
const num = (v: unknown): number | undefined =>
  v === null || v === undefined || v === "" ? undefined : Number(v);

/** A proto3-JSON Signal (GET /api/v1/trading/...). */
export function signalFromRest(s: Json): Signal {
  const source = String(s.source ?? "").includes("TECHNICAL") ? "technical" : "model";
  return {
    id: String(s.id),
    pair: String(s.pair),
    timeframe: tfFromAny(s.timeframe as string) ?? "1h",
    action: actionFromAny(s.action as string),
    confidence: Number(s.confidence ?? 0),
    entryPrice: Number(s.entryPrice ?? 0),
    stopLoss: num(s.stopLoss),
    takeProfit: num(s.takeProfit),
    riskReward: num(s.riskRewardRatio),
    strength: strengthFromAny(s.strength as string),
    source,
    model: s.modelName ? `${s.modelName} v${s.modelVersion ?? "?"}` : source,
    candleTime: String(s.candleTime ?? ""),
    createTime: String(s.createTime ?? ""),
    indicators: (s.indicators as Record<string, number>) ?? {},
  };
}

/** A `trading:signal` Socket.IO event. */
export function signalFromSocket(s: Json): Signal {
  return {
    id: String(s.id),
    pair: String(s.pair),
    timeframe: tfFromAny(s.timeframe as string) ?? "1h",
    action: actionFromAny(s.signal as string),
    confidence: Number(s.confidence ?? 0),
    entryPrice: Number(s.entryPrice ?? 0),
    stopLoss: num(s.stopLoss),
    takeProfit: num(s.takeProfit),
    riskReward: num(s.riskRewardRatio),
    strength: strengthFromAny(s.signalStrength as string),
    source: s.source === "technical" ? "technical" : "model",
    model: String(s.model ?? s.source ?? ""),
    candleTime: String(s.candleTime ?? ""),
    createTime: String(s.timestamp ?? ""),
    indicators: (s.technicalData as Record<string, number>) ?? {},
  };
}

export interface Position {
  id: string;
  pair: string;
  side: string;
  lotSize: string;
  entryPrice: string;
  stopLoss: string;
  takeProfit: string;
  status: string;
  closeReason: string;
  exitPrice: string;
  result: string;
  pips: string;
  realizedPnl: string;
  unrealizedPnl: string;
  pnlCurrency: string;
  currentPrice: string;
  signalId: string;
  openTime: string;
  closeTime?: string;
  updateTime?: string;
}

export interface Preferences {
  pairs: string[];
  timeframes: string[];
  minConfidence: number;
  notifyDiscord: boolean;
  notifyBrowser: boolean;
  updateTime?: string;
}

export interface SeriesInfo {
  timeframe: string;
  priceKind: string;
  source: string;
  origin?: string;
  signals?: boolean;
}

export interface PairInfo {
  pair: string;
  baseCurrency: string;
  quoteCurrency: string;
  pipSize: number;
  timeframes?: string[];
  series?: SeriesInfo[];
}

export interface Quote {
  pair: string;
  price: number;
  high?: number;
  low?: number;
  timestamp: string;
}

export interface PositionNotification {
  id: string;
  type: string;
  message: string;
  timestamp: string;
  position?: Position;
}

export interface Performance {
  trades: number;
  wins: number;
  losses: number;
  breakevens: number;
  winRate: number;
  totalPips: string;
  totalPnl: string;
  profitFactor?: number;
  averageRiskReward?: number;
  maxDrawdown: string;
  currency: string;
  pairs: {
    pair: string;
    trades: number;
    wins: number;
    losses: number;
    breakevens: number;
    winRate: number;
    totalPips: string;
    totalPnl: string;
  }[];
  equityCurve: { time: string; positionId: string; cumulativePnl: string; cumulativePips: string }[];
  unconvertedTrades?: number;
}
