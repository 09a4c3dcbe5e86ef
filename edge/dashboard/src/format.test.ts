import { describe, expect, it } from "vitest";
import {
  actionFromAny,
  barStart,
  camelField,
  fmtMoney,
  fmtPips,
  fmtPrice,
  pairCode,
  pairSlash,
  pipsAt,
  pipSize,
  pnlAt,
  strengthFromAny,
  tfFromAny,
  tfToEnum,
  timeAgo,
} from "./format";
import { signalFromRest, signalFromSocket } from "./types";

describe("pairs and pips", () => {
  it("normalises pair forms", () => {
    expect(pairCode("EUR/USD")).toBe("EURUSD");
    expect(pairCode("eur-usd")).toBe("EURUSD");
    expect(pairSlash("usdjpy")).toBe("USD/JPY");
  });
  it("uses 0.01 pips for JPY quotes and 0.0001 otherwise", () => {
    expect(pipSize("USD/JPY")).toBe(0.01);
    expect(pipSize("EUR/USD")).toBe(0.0001);
  });
  it("signs pips and PnL by side", () => {
    expect(pipsAt("EUR/USD", "TRADE_ACTION_BUY", 1.1, 1.1015)).toBeCloseTo(15, 6);
    expect(pipsAt("EUR/USD", "TRADE_ACTION_SELL", 1.1, 1.1015)).toBeCloseTo(-15, 6);
    expect(pipsAt("USD/JPY", "buy", 110, 109.5)).toBeCloseTo(-50, 6);
    // (exit - entry) x lots x 100,000, negated for SELL
    expect(pnlAt("TRADE_ACTION_BUY", 1.09989, 1.12458, 0.1)).toBeCloseTo(246.9, 6);
    expect(pnlAt("TRADE_ACTION_SELL", 125.02, 123.278, 0.1)).toBeCloseTo(17420, 6);
  });
});

describe("formatting", () => {
  it("formats prices with one digit beyond the pip", () => {
    expect(fmtPrice(1.0834512, "EUR/USD")).toBe("1.08345");
    expect(fmtPrice("110.8641", "USD/JPY")).toBe("110.864");
    expect(fmtPrice("", "EUR/USD")).toBe("—");
  });
  it("formats pips and money with signs", () => {
    expect(fmtPips(15.26)).toBe("+15.3");
    expect(fmtPips("-3")).toBe("-3.0");
    expect(fmtMoney("1234.5", "USD")).toBe("+1,234.50 USD");
    expect(fmtMoney(-12.5, "JPY")).toBe("−12.50 JPY");
    expect(fmtMoney(0)).toBe("0.00 USD");
  });
  it("says how long ago", () => {
    const now = Date.parse("2026-01-01T12:00:00Z");
    expect(timeAgo("2026-01-01T12:00:02Z", now)).toBe("just now");
    expect(timeAgo("2026-01-01T11:59:30Z", now)).toBe("30 s ago");
    expect(timeAgo("2026-01-01T11:57:00Z", now)).toBe("3 min ago");
    expect(timeAgo("2026-01-01T07:00:00Z", now)).toBe("5 h ago");
    expect(timeAgo("2025-12-29T12:00:00Z", now)).toBe("3 d ago");
  });
});

describe("enums", () => {
  it("maps timeframes both ways", () => {
    expect(tfFromAny("TIMEFRAME_H1")).toBe("1h");
    expect(tfFromAny("1d")).toBe("1d");
    expect(tfFromAny("H4")).toBe("4h");
    expect(tfFromAny("2h")).toBeUndefined();
    expect(tfToEnum("15m")).toBe("TIMEFRAME_M15");
  });
  it("maps actions and strengths", () => {
    expect(actionFromAny("TRADE_ACTION_SELL")).toBe("sell");
    expect(actionFromAny("buy")).toBe("buy");
    expect(actionFromAny("TRADE_ACTION_HOLD")).toBe("hold");
    expect(strengthFromAny("SIGNAL_STRENGTH_VERY_STRONG")).toBe("very_strong");
  });
  it("turns proto field paths into form names", () => {
    expect(camelField("stop_loss")).toBe("stopLoss");
    expect(camelField("preferences.min_confidence")).toBe("minConfidence");
  });
});

describe("bars", () => {
  it("puts a quote on a boundary into the bar it closes", () => {
    expect(barStart("2017-05-07T22:00:00Z", "1h")).toBe(Date.parse("2017-05-07T21:00:00Z") / 1000);
    expect(barStart("2017-05-07T22:30:00Z", "1h")).toBe(Date.parse("2017-05-07T22:00:00Z") / 1000);
  });
});

describe("signals", () => {
  it("reads the REST and the Socket.IO shapes alike", () => {
    const rest = signalFromRest({
      id: "5", pair: "EUR/USD", timeframe: "TIMEFRAME_H1", action: "TRADE_ACTION_BUY", confidence: 0.7,
      strength: "SIGNAL_STRENGTH_STRONG", entryPrice: 1.1, stopLoss: 1.09, takeProfit: 1.12, riskRewardRatio: 2,
      source: "SIGNAL_SOURCE_TECHNICAL_FALLBACK", modelName: "technical", modelVersion: "1",
      candleTime: "2017-05-05T21:00:00Z", createTime: "2026-12-04T23:40:56Z",
    });
    const sock = signalFromSocket({
      id: "5", pair: "EUR/USD", timeframe: "1h", signal: "buy", confidence: 0.7, entryPrice: 1.1, stopLoss: 1.09,
      takeProfit: 1.12, riskRewardRatio: 2, signalStrength: "strong", source: "technical", model: "technical v1",
      candleTime: "2017-05-05T21:00:00.000Z", timestamp: "2026-12-04T23:40:56.000Z",
    });
    for (const s of [rest, sock]) {
      expect(s).toMatchObject({ id: "5", timeframe: "1h", action: "buy", strength: "strong", source: "technical", riskReward: 2 });
    }
    expect(signalFromSocket({ id: "6", signal: "hold", stopLoss: null }).stopLoss).toBeUndefined();
  });
});
