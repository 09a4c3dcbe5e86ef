import { useState, type FormEvent } from "react";
import { ApiError, session } from "../api";

type Mode = "login" | "signup";

export default function AuthPage({ notice }: { notice?: string }) {
  const [mode, setMode] = useState<Mode>(location.pathname.startsWith("/signup") ? "signup" : "login");
  const [email, setEmail] = useState("");
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [pending, setPending] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [fields, setFields] = useState<Record<string, string>>({});

  const switchTo = (m: Mode) => {
    setMode(m);
    setError(null);
    setFields({});
    history.replaceState(null, "", m === "signup" ? "/signup" : "/login");
  };

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (pending) return;
    setError(null);
    setFields({});
    const local: Record<string, string> = {};
    if (!email.trim()) local.email = mode === "login" ? "Enter your email or username" : "Enter your email";
    if (mode === "signup" && !username.trim()) local.username = "Choose a username";
    if (!password) local.password = "Enter your password";
    else if (mode === "signup" && password.length < 8) local.password = "Use at least 8 characters";
    if (Object.keys(local).length) {
      setFields(local);
      return;
    }
    setPending(true);
    try {
      if (mode === "login") await session.login(email.trim(), password);
      else await session.register(email.trim(), username.trim(), password);
      if (location.pathname === "/login" || location.pathname === "/signup") history.replaceState(null, "", "/");
    } catch (err) {
      if (err instanceof ApiError) {
        setFields(err.fields);
        if (err.status === 401) setError("Wrong email/username or password.");
        else if (err.status === 409) setError(err.message || "That email or username is already registered.");
        else if (err.status === 429) setError(err.message || "Too many attempts — wait a moment and try again.");
        else if (err.status === 400 && Object.keys(err.fields).length) setError("Please fix the highlighted fields.");
        else setError(err.message);
      } else {
        setError(`Could not reach AIFX: ${(err as Error).message}`);
      }
    } finally {
      setPending(false);
    }
  };

  const p = mode === "login" ? "login" : "signup";
  return (
    <div className="auth-wrap">
      <div className="auth-card panel">
        <div className="brand big">
          <span className="logo" aria-hidden>
            ◢
          </span>{" "}
          AIFX
        </div>
        <p className="muted">AI forex signals — calibrated, explained, and honest about their limits.</p>
        <div className="tabs" role="tablist">
          <button
            role="tab"
            aria-selected={mode === "login"}
            className={mode === "login" ? "tab active" : "tab"}
            onClick={() => switchTo("login")}
            data-testid="auth-tab-login"
          >
            Sign in
          </button>
          <button
            role="tab"
            aria-selected={mode === "signup"}
            className={mode === "signup" ? "tab active" : "tab"}
            onClick={() => switchTo("signup")}
            data-testid="auth-tab-signup"
          >
            Create account
          </button>
        </div>
        {notice && !error && (
          <div className="banner warn" data-testid="auth-notice">
            {notice}
          </div>
        )}
        <form onSubmit={submit} noValidate data-testid={`${p}-form`}>
          <label>
            {mode === "login" ? "Email or username" : "Email"}
            <input
              type={mode === "login" ? "text" : "email"}
              autoComplete={mode === "login" ? "username" : "email"}
              value={email}
              onChange={(e) => setEmail(e.target.value)}
              data-testid={`${p}-email`}
              aria-invalid={!!fields.email || !!fields.identifier}
            />
            {(fields.email || fields.identifier) && (
              <span className="field-error" data-testid={`${p}-email-error`}>
                {fields.email || fields.identifier}
              </span>
            )}
          </label>
          {mode === "signup" && (
            <label>
              Username
              <input
                autoComplete="nickname"
                value={username}
                onChange={(e) => setUsername(e.target.value)}
                data-testid="signup-username"
                aria-invalid={!!fields.username}
              />
              {fields.username && (
                <span className="field-error" data-testid="signup-username-error">
                  {fields.username}
                </span>
              )}
            </label>
          )}
          <label>
            Password
            <input
              type="password"
              autoComplete={mode === "login" ? "current-password" : "new-password"}
              value={password}
              onChange={(e) => setPassword(e.target.value)}
              data-testid={`${p}-password`}
              aria-invalid={!!fields.password}
            />
            {fields.password && (
              <span className="field-error" data-testid={`${p}-password-error`}>
                {fields.password}
              </span>
            )}
          </label>
          {error && (
            <div className="banner error" role="alert" data-testid={`${p}-error`}>
              {error}
            </div>
          )}
          <button type="submit" className="primary wide" disabled={pending} data-testid={`${p}-submit`}>
            {pending ? <span className="spinner" aria-hidden /> : null}
            {pending ? (mode === "login" ? "Signing in…" : "Creating account…") : mode === "login" ? "Sign in" : "Create account"}
          </button>
        </form>
      </div>
    </div>
  );
}
