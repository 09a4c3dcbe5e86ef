import { useEffect, useState } from "react";
import { api, ApiError, describeError } from "../api";
import { fmtTime, tfFromAny, tfToEnum, TIMEFRAMES, type Tf } from "../format";
import { toast, useApp, useAsync, useNow } from "../hooks";
import type { Preferences } from "../types";

interface Me {
  user: { id: string; email: string; username: string };
  discord?: { discordUserId: string; discordUsername?: string; linkTime?: string; dmReachable?: boolean };
  dmReachable?: boolean;
}

export default function SettingsPage() {
  return (
    <div className="stack" data-testid="settings-page">
      <PreferencesForm />
      <DiscordLink />
    </div>
  );
}

function PreferencesForm() {
  const { prefs, setPrefs, pairs } = useApp();
  const [pairSel, setPairSel] = useState<string[]>([]);
  const [tfSel, setTfSel] = useState<Tf[]>([]);
  const [minConf, setMinConf] = useState(0.6);
  const [notifyBrowser, setNotifyBrowser] = useState(false);
  const [notifyDiscord, setNotifyDiscord] = useState(false);
  const [saving, setSaving] = useState(false);
  const [result, setResult] = useState<{ ok: boolean; text: string } | null>(null);
  const [fields, setFields] = useState<Record<string, string>>({});
  const [permission, setPermission] = useState<string>("Notification" in window ? Notification.permission : "unsupported");

  useEffect(() => {
    if (!prefs) return;
    setPairSel(prefs.pairs);
    setTfSel(prefs.timeframes.map((t) => tfFromAny(t)).filter(Boolean) as Tf[]);
    setMinConf(prefs.minConfidence ?? 0);
    setNotifyBrowser(!!prefs.notifyBrowser);
    setNotifyDiscord(!!prefs.notifyDiscord);
  }, [prefs]);

  if (!prefs) {
    return (
      <section className="panel">
        <div className="empty">
          <span className="spinner" aria-hidden /> Loading preferences…
        </div>
      </section>
    );
  }

  const togglePair = (p: string) => setPairSel((s) => (s.includes(p) ? s.filter((x) => x !== p) : [...s, p]));
  const toggleTf = (t: Tf) => setTfSel((s) => (s.includes(t) ? s.filter((x) => x !== t) : [...s, t]));

  const onBrowserToggle = async (on: boolean) => {
    setNotifyBrowser(on);
    if (on && "Notification" in window && Notification.permission === "default") {
      try {
        setPermission(await Notification.requestPermission());
      } catch {
        /* ignored: the toggle still controls in-page toasts */
      }
    }
  };

  const save = async () => {
    setSaving(true);
    setResult(null);
    setFields({});
    try {
      const r = await api<{ preferences: Preferences }>("/api/v1/auth/preferences", {
        method: "PATCH",
        // Name every field so an empty list clears it (AIP-134 with an explicit mask).
        query: { updateMask: "pairs,timeframes,minConfidence,notifyDiscord,notifyBrowser" },
        body: {
          pairs: pairSel,
          timeframes: tfSel.map(tfToEnum),
          minConfidence: Math.round(minConf * 100) / 100,
          notifyDiscord,
          notifyBrowser,
        },
      });
      setPrefs(r.preferences);
      setResult({ ok: true, text: "Preferences saved." });
      toast("success", "Preferences saved");
    } catch (e) {
      if (e instanceof ApiError) setFields(e.fields);
      setResult({ ok: false, text: describeError(e, "Account service") });
    } finally {
      setSaving(false);
    }
  };

  const signalPairs = pairs.filter((p) => (p.timeframes ?? []).length || pairSel.includes(p.pair));
  return (
    <section className="panel" data-testid="preferences">
      <div className="panel-head">
        <h2>Signal preferences</h2>
        {prefs.updateTime ? <span className="muted small-text">saved {fmtTime(prefs.updateTime)}</span> : null}
      </div>
      <fieldset className={fields.pairs ? "invalid" : ""}>
        <legend>Pairs to follow</legend>
        <p className="muted small-text">None ticked means every pair.</p>
        <div className="checks">
          {signalPairs.map((p) => (
            <label key={p.pair} className="check">
              <input
                type="checkbox"
                checked={pairSel.includes(p.pair)}
                onChange={() => togglePair(p.pair)}
                data-testid={`pref-pair-${p.pair.replace("/", "")}`}
              />
              {p.pair}
              <span className="muted small-text">{(p.timeframes ?? []).map((t) => tfFromAny(t)).join(" ")}</span>
            </label>
          ))}
        </div>
        {fields.pairs && <span className="field-error">{fields.pairs}</span>}
      </fieldset>
      <fieldset className={fields.timeframes ? "invalid" : ""}>
        <legend>Timeframes</legend>
        <div className="checks">
          {TIMEFRAMES.map((t) => (
            <label key={t} className="check">
              <input type="checkbox" checked={tfSel.includes(t)} onChange={() => toggleTf(t)} data-testid={`pref-tf-${t}`} />
              {t}
            </label>
          ))}
        </div>
        {fields.timeframes && <span className="field-error">{fields.timeframes}</span>}
      </fieldset>
      <fieldset>
        <legend>Minimum confidence</legend>
        <div className="slider-row">
          <input
            type="range"
            min={0}
            max={1}
            step={0.01}
            value={minConf}
            onChange={(e) => setMinConf(Number(e.target.value))}
            data-testid="pref-min-confidence"
            aria-label="Minimum confidence"
          />
          <b data-testid="pref-min-confidence-value">{Math.round(minConf * 100)}%</b>
        </div>
        <p className="muted small-text">Signals below this confidence are not notified (the board still shows them).</p>
        {fields.minConfidence && <span className="field-error">{fields.minConfidence}</span>}
      </fieldset>
      <fieldset>
        <legend>Notifications</legend>
        <label className="check">
          <input type="checkbox" checked={notifyBrowser} onChange={(e) => void onBrowserToggle(e.target.checked)} data-testid="pref-notify-browser" />
          Browser notifications
          <span className="muted small-text" data-testid="notification-permission">
            {permission === "granted"
              ? "allowed"
              : permission === "denied"
                ? "blocked by the browser — in-page toasts only"
                : permission === "unsupported"
                  ? "not supported here — in-page toasts only"
                  : "permission asked when you turn this on"}
          </span>
          {permission === "default" && notifyBrowser ? (
            <button
              type="button"
              className="small ghost"
              onClick={async () => setPermission(await Notification.requestPermission())}
              data-testid="notification-allow"
            >
              Allow in this browser
            </button>
          ) : null}
        </label>
        <label className="check">
          <input type="checkbox" checked={notifyDiscord} onChange={(e) => setNotifyDiscord(e.target.checked)} data-testid="pref-notify-discord" />
          Discord DMs <span className="muted small-text">(needs a linked Discord account, below)</span>
        </label>
        {fields.notifyDiscord && <span className="field-error">{fields.notifyDiscord}</span>}
      </fieldset>
      <div className="row">
        <button className="primary" onClick={save} disabled={saving} data-testid="pref-save">
          {saving ? <span className="spinner" aria-hidden /> : null}
          {saving ? "Saving…" : "Save preferences"}
        </button>
        {result && (
          <span className={result.ok ? "ok-text" : "field-error"} role="status" data-testid={result.ok ? "pref-saved" : "pref-error"}>
            {result.text}
          </span>
        )}
      </div>
    </section>
  );
}

function DiscordLink() {
  const { data, error, loading, reload } = useAsync(() => api<Me>("/api/v1/auth/me"), []);
  const [code, setCode] = useState<{ code: string; expireTime?: string; instructions?: string } | null>(null);
  const [pending, setPending] = useState<"code" | "unlink" | null>(null);
  const [err, setErr] = useState<string | null>(null);
  const now = useNow(1000);
  const link = data?.discord;

  // While a code is shown, look for the link every 5 s.
  useEffect(() => {
    if (!code || link) return;
    const id = setInterval(reload, 5000);
    return () => clearInterval(id);
  }, [code, link, reload]);
  useEffect(() => {
    if (link) setCode(null);
  }, [link]);

  const getCode = async () => {
    setPending("code");
    setErr(null);
    try {
      setCode(await api("/api/v1/auth/discord/link-code", { method: "POST", body: {} }));
    } catch (e) {
      setErr(describeError(e, "Auth service"));
    } finally {
      setPending(null);
    }
  };
  const unlink = async () => {
    setPending("unlink");
    setErr(null);
    try {
      await api("/api/v1/auth/discord", { method: "DELETE" });
      toast("info", "Discord unlinked");
      reload();
    } catch (e) {
      setErr(describeError(e, "Auth service"));
    } finally {
      setPending(null);
    }
  };

  const left = code?.expireTime ? Math.max(0, Math.round((Date.parse(code.expireTime) - now) / 1000)) : null;
  return (
    <section className="panel" data-testid="discord-panel">
      <div className="panel-head">
        <h2>Discord</h2>
      </div>
      {error ? <div className="banner error">{describeError(error, "Auth service")} — retrying</div> : null}
      {loading && !data ? (
        <div className="empty">
          <span className="spinner" aria-hidden /> Loading…
        </div>
      ) : link ? (
        <div data-testid="discord-linked">
          <p>
            Linked to <b>{link.discordUsername || link.discordUserId}</b>
            {link.linkTime ? <span className="muted"> since {fmtTime(link.linkTime)}</span> : null}.
          </p>
          {link.dmReachable === false || data?.dmReachable === false ? (
            <div className="banner warn" data-testid="discord-dm-unreachable">
              Discord refused our last DM (your DMs are closed). Open DMs from server members, then use any AIFX bot command.
            </div>
          ) : null}
          <button className="danger" onClick={unlink} disabled={pending !== null} data-testid="discord-unlink">
            {pending === "unlink" ? "Unlinking…" : "Unlink Discord"}
          </button>
        </div>
      ) : (
        <div data-testid="discord-unlinked">
          <p className="muted">Not linked. Link your Discord account to receive signals and position alerts as DMs.</p>
          {code && left !== 0 ? (
            <div className="link-code" data-testid="discord-code-box">
              <div>
                Type{" "}
                <code className="code" data-testid="discord-link-code">
                  /link {code.code}
                </code>{" "}
                to the AIFX bot in Discord.
              </div>
              <div className="muted small-text" data-testid="discord-code-expiry">
                {left !== null ? `Expires in ${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}` : ""}
                {code.expireTime ? ` (at ${fmtTime(code.expireTime)})` : ""} · single use · waiting for the link…
              </div>
            </div>
          ) : null}
          <button className="primary" onClick={getCode} disabled={pending !== null} data-testid="discord-get-code">
            {pending === "code" ? "Getting a code…" : code ? "Get a new code" : "Get link code"}
          </button>
        </div>
      )}
      {err && (
        <div className="field-error block" data-testid="discord-error">
          {err}
        </div>
      )}
    </section>
  );
}
