import { useMemo, useState } from "react";
import { marked } from "marked";
import { api, ApiError, describeError } from "../api";
import { fmtNum, fmtPct, fmtTime, tfFromAny } from "../format";
import { useAsync } from "../hooks";

interface Metric {
  name: string;
  accuracy?: number;
  balancedAccuracy?: number;
  logLoss?: number;
  brierScore?: number;
  expectedCalibrationError?: number;
}

interface ModelInfo {
  modelName: string;
  modelVersion: string;
  trainTime?: string;
  dataStartTime?: string;
  dataEndTime?: string;
  testStartTime?: string;
  pairs?: string[];
  timeframes?: string[];
  lookback?: number;
  horizon?: number;
  calibrationMethod?: string;
  metrics?: Metric[];
  confidenceThreshold?: number;
  testCount?: string;
  versions?: string[];
  card?: string;
  modelCard?: string;
  reliabilityUrl?: string;
  edge?: { demonstrated: boolean; summary: string };
}

const BASELINE_NAMES: Record<string, string> = {
  model: "LSTM (calibrated)",
  majority_class: "Majority class",
  persistence: "Persistence",
  technical_rules: "Technical rules",
};

export default function ModelPage() {
  const [tf, setTf] = useState<"1h" | "1d">("1h");
  const { data, error, loading, reload } = useAsync(() => api<ModelInfo>("/model/info", { query: { timeframe: tf } }), [tf]);
  const cardHtml = useMemo(() => {
    const md = data?.card ?? data?.modelCard ?? "";
    return md ? (marked.parse(md, { async: false }) as string) : "";
  }, [data]);
  const verdictHtml = useMemo(
    () => (data?.edge?.summary ? (marked.parseInline(data.edge.summary, { async: false }) as string) : ""),
    [data],
  );
  const unavailable = error instanceof ApiError && error.unavailable;

  return (
    <div className="stack" data-testid="model-page">
      <section className="panel">
        <div className="panel-head wrap">
          <h2>The model</h2>
          <div className="seg" role="group" aria-label="Timeframe">
            {(["1h", "1d"] as const).map((t) => (
              <button key={t} className={tf === t ? "active" : ""} onClick={() => setTf(t)} data-testid={`model-tf-${t}`}>
                {t === "1h" ? "Hourly (1h)" : "Daily (1d)"}
              </button>
            ))}
          </div>
        </div>
        {error ? (
          <div className="banner error" data-testid="model-error">
            {unavailable ? "The inference service is unavailable — retrying." : describeError(error, "Model information")}{" "}
            <button className="small ghost" onClick={reload}>
              Retry now
            </button>
          </div>
        ) : null}
        {loading && !data ? (
          <div className="empty">
            <span className="spinner" aria-hidden /> Loading the model card…
          </div>
        ) : null}
        {data ? (
          <>
            {data.edge ? (
              <div className={`verdict ${data.edge.demonstrated ? "ok" : "warn"}`} data-testid="model-verdict" data-demonstrated={String(data.edge.demonstrated)}>
                {/demonstrated edge/i.test(data.edge.summary.slice(0, 40)) ? null : (
                  <div className="verdict-title">{data.edge.demonstrated ? "Edge demonstrated on held-out data" : "No demonstrated edge"}</div>
                )}
                <div className="verdict-body" dangerouslySetInnerHTML={{ __html: verdictHtml }} />
              </div>
            ) : null}
            <div className="stats">
              <div className="stat">
                <div className="stat-label">Model</div>
                <div className="stat-value" data-testid="model-name">
                  {data.modelName} v{data.modelVersion}
                </div>
              </div>
              <div className="stat">
                <div className="stat-label">Trained</div>
                <div className="stat-value small">{fmtTime(data.trainTime)}</div>
              </div>
              <div className="stat">
                <div className="stat-label">Covers</div>
                <div className="stat-value small">
                  {(data.pairs ?? []).join(", ") || "—"} · {(data.timeframes ?? []).map((t) => tfFromAny(t) ?? t).join(", ")}
                </div>
              </div>
              <div className="stat">
                <div className="stat-label">Confidence threshold</div>
                <div className="stat-value">{data.confidenceThreshold !== undefined ? fmtPct(data.confidenceThreshold) : "—"}</div>
              </div>
              <div className="stat">
                <div className="stat-label">Versions</div>
                <div className="stat-value small" data-testid="model-versions">
                  {(data.versions ?? []).map((v) => (
                    <span key={v} className={`badge ${v === data.modelVersion ? "src-model" : ""}`}>
                      v{v}
                      {v === data.modelVersion ? " (serving)" : ""}
                    </span>
                  ))}
                </div>
              </div>
            </div>
            {data.metrics?.length ? (
              <div className="table-scroll">
                <table className="table" data-testid="model-metrics">
                  <caption className="muted small-text">
                    Held-out test split{data.testCount ? ` (${data.testCount} samples)` : ""}
                    {data.testStartTime ? ` from ${fmtTime(data.testStartTime)}` : ""}
                  </caption>
                  <thead>
                    <tr>
                      <th>Predictor</th>
                      <th className="num">Accuracy ↑</th>
                      <th className="num">Balanced acc. ↑</th>
                      <th className="num">Log loss ↓</th>
                      <th className="num">Brier ↓</th>
                      <th className="num">ECE ↓</th>
                    </tr>
                  </thead>
                  <tbody>
                    {data.metrics.map((m) => (
                      <tr key={m.name} className={m.name === "model" ? "hl" : ""}>
                        <td>{BASELINE_NAMES[m.name] ?? m.name}</td>
                        <td className="num">{fmtPct(m.accuracy, 1)}</td>
                        <td className="num">{fmtPct(m.balancedAccuracy, 1)}</td>
                        <td className="num">{fmtNum(m.logLoss, 4)}</td>
                        <td className="num">{fmtNum(m.brierScore, 4)}</td>
                        <td className="num">{fmtNum(m.expectedCalibrationError, 4)}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            ) : null}
          </>
        ) : null}
      </section>
      {data?.reliabilityUrl ? (
        <section className="panel">
          <div className="panel-head">
            <h2>Reliability (calibration)</h2>
            <span className="muted">predicted confidence vs. how often it was right</span>
          </div>
          <img className="reliability" src={data.reliabilityUrl} alt="Reliability diagram of the model's calibrated probabilities" data-testid="model-reliability" />
        </section>
      ) : null}
      {cardHtml ? (
        <section className="panel">
          <div className="panel-head">
            <h2>Model card</h2>
          </div>
          <article className="markdown" data-testid="model-card" dangerouslySetInnerHTML={{ __html: cardHtml }} />
        </section>
      ) : null}
    </div>
  );
}
