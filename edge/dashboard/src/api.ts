// The session (BFF: the refresh token is an HttpOnly cookie the edge sets; the access
// token lives in this module's memory only) and the REST client.

import { camelField } from "./format";
import type { User } from "./types";

export interface FieldViolation {
  field: string;
  description: string;
}

/** A failed request: HTTP status, gRPC-ish code name, human message, field violations. */
export class ApiError extends Error {
  status: number;
  code: string;
  fields: Record<string, string>;
  constructor(status: number, code: string, message: string, violations: FieldViolation[] = []) {
    super(message);
    this.status = status;
    this.code = code;
    this.fields = {};
    for (const v of violations) this.fields[camelField(v.field)] = v.description;
  }
  get unavailable(): boolean {
    return this.status === 503 || this.status === 0 || this.code === "UNAVAILABLE";
  }
}

const GRPC_CODES: Record<number, string> = {
  1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND",
  6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION",
  10: "ABORTED", 13: "INTERNAL", 14: "UNAVAILABLE", 16: "UNAUTHENTICATED",
};

/** Envoy's google.rpc.Status JSON ({code: 3, message, details: [BadRequest...]}) or the
 * edge's ({code: "INVALID_ARGUMENT", message, fieldViolations}). */
async function errorFrom(res: Response): Promise<ApiError> {
  let body: Record<string, unknown> = {};
  try {
    body = await res.json();
  } catch {
    /* not JSON (e.g. a proxy's HTML page) */
  }
  const raw = body.code;
  const code = typeof raw === "number" ? GRPC_CODES[raw] ?? String(raw) : String(raw ?? res.status);
  let violations = (body.fieldViolations as FieldViolation[]) ?? [];
  for (const d of (body.details as Record<string, unknown>[]) ?? []) {
    if (Array.isArray(d.fieldViolations)) violations = violations.concat(d.fieldViolations as FieldViolation[]);
  }
  const fallback =
    res.status === 503 ? "Service unavailable — try again shortly" : `Request failed (HTTP ${res.status})`;
  const message = String(body.message ?? fallback);
  // Envoy's own words for an upstream that is down mean nothing to a trader.
  const proxyNoise = /^(upstream connect error|no healthy upstream|upstream request timeout)/i;
  return new ApiError(res.status, code, proxyNoise.test(message) ? "the service is not answering" : message, violations);
}

export interface SessionState {
  status: "loading" | "signedOut" | "signedIn";
  user: User | null;
  token: string | null;
  expiresAt: number; // ms epoch
  notice?: string; // why we are signed out, when it was not the user's doing
}

type Listener = (s: SessionState) => void;

class Session {
  state: SessionState = { status: "loading", user: null, token: null, expiresAt: 0 };
  private listeners = new Set<Listener>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private inflight: Promise<string | null> | null = null;

  subscribe = (l: Listener): (() => void) => {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  };
  getState = (): SessionState => this.state;

  private set(next: Partial<SessionState>) {
    this.state = { ...this.state, ...next };
    for (const l of this.listeners) l(this.state);
  }

  private signedIn(body: { accessToken: string; expiresIn: number | string; user: User }) {
    const seconds = Number(body.expiresIn) || 300;
    const expiresAt = Date.now() + seconds * 1000;
    clearTimeout(this.timer);
    // Refresh silently about a minute before expiry (never sooner than 5 s from now).
    this.timer = setTimeout(() => void this.refresh(), Math.max(5, seconds - 60) * 1000);
    this.set({ status: "signedIn", user: body.user, token: body.accessToken, expiresAt, notice: undefined });
  }

  signOutLocally(notice?: string) {
    clearTimeout(this.timer);
    this.set({ status: "signedOut", user: null, token: null, expiresAt: 0, notice });
  }

  private async post(path: string, body?: unknown): Promise<Response> {
    return fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-AIFX-Session": "1", ...(body ? { "Content-Type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
  }

  async login(email: string, password: string): Promise<void> {
    const res = await this.post("/session/login", { email, password });
    if (!res.ok) throw await errorFrom(res);
    this.signedIn(await res.json());
  }

  async register(email: string, username: string, password: string): Promise<void> {
    const res = await this.post("/session/register", { email, username, password });
    if (!res.ok) throw await errorFrom(res);
    this.signedIn(await res.json());
  }

  async logout(): Promise<void> {
    try {
      await this.post("/session/logout");
    } finally {
      this.signOutLocally();
    }
  }

  /** A new access token from the session cookie (single flight); null when the session
   * has ended (then the state is signedOut). Network failures keep the current state. */
  refresh(): Promise<string | null> {
    if (!this.inflight) {
      this.inflight = (async () => {
        try {
          const res = await this.post("/session/refresh");
          if (res.ok) {
            this.signedIn(await res.json());
            return this.state.token;
          }
          if (res.status === 401 || res.status === 400) {
            const wasIn = this.state.status === "signedIn";
            this.signOutLocally(wasIn ? "Your session ended — please sign in again." : undefined);
            return null;
          }
          throw await errorFrom(res);
        } catch (e) {
          if (this.state.status === "loading") {
            this.signOutLocally(`Could not reach AIFX (${(e as Error).message}). Sign in to retry.`);
          } else {
            // Keep the session; try again in 15 s.
            clearTimeout(this.timer);
            this.timer = setTimeout(() => void this.refresh(), 15000);
          }
          return null;
        } finally {
          this.inflight = null;
        }
      })();
    }
    return this.inflight;
  }
}

export const session = new Session();

/** Which backend a path belongs to, for the outage banner. */
export function serviceOf(path: string): string | null {
  if (/^\/api\/v1\/(trading|market)\//.test(path)) return "Signal service";
  if (path.startsWith("/api/v1/positions")) return "Position service";
  if (path.startsWith("/api/v1/auth/")) return "Account service";
  if (path.startsWith("/model/")) return "Inference service";
  return null;
}

type OutageListener = () => void;
/** Services whose last call failed as unavailable (503 / network), with the message. */
export const outages = {
  map: {} as Record<string, string>,
  listeners: new Set<OutageListener>(),
  get: (): Record<string, string> => outages.map,
  subscribe: (l: OutageListener) => {
    outages.listeners.add(l);
    return () => outages.listeners.delete(l);
  },
  mark(service: string | null, message: string | null) {
    if (!service) return;
    if (message === null ? !(service in outages.map) : outages.map[service] === message) return;
    const next = { ...outages.map };
    if (message === null) delete next[service];
    else next[service] = message;
    outages.map = next;
    for (const l of outages.listeners) l();
  },
  clear() {
    outages.map = {};
    for (const l of outages.listeners) l();
  },
};

/** REST call with the access token; a 401 refreshes the session and retries once. */
export async function api<T = unknown>(
  path: string,
  init: { method?: string; body?: unknown; query?: Record<string, string | number | undefined> } = {},
): Promise<T> {
  let url = path;
  if (init.query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(init.query)) if (v !== undefined && v !== "") q.set(k, String(v));
    const s = q.toString();
    if (s) url += (url.includes("?") ? "&" : "?") + s;
  }
  const send = async (token: string | null) => {
    try {
      return await fetch(url, {
        method: init.method ?? "GET",
        credentials: "same-origin",
        headers: {
          ...(token ? { Authorization: `Bearer ${token}` } : {}),
          ...(init.body !== undefined ? { "Content-Type": "application/json" } : {}),
        },
        body: init.body !== undefined ? JSON.stringify(init.body) : undefined,
      });
    } catch (e) {
      const err = new ApiError(0, "UNAVAILABLE", `network error — ${(e as Error).message}`);
      outages.mark(serviceOf(path), err.message);
      throw err;
    }
  };
  let res = await send(session.state.token);
  if (res.status === 401) {
    const fresh = await session.refresh();
    if (!fresh) throw new ApiError(401, "UNAUTHENTICATED", "Your session ended — please sign in again.");
    res = await send(fresh);
  }
  const service = serviceOf(path);
  if (!res.ok) {
    const err = await errorFrom(res);
    if (err.unavailable) outages.mark(service, err.message);
    else if (res.status < 500) outages.mark(service, null);
    throw err;
  }
  outages.mark(service, null);
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  return (text ? JSON.parse(text) : {}) as T;
}

/** "Signal service unavailable — retrying" and friends, for a failed load. */
export function describeError(e: unknown, what = "Request"): string {
  if (e instanceof ApiError) {
    // The details (Envoy's upstream text) go to the outage banner, not every card.
    if (e.unavailable) return `${what} unavailable`;
    return e.message;
  }
  return (e as Error)?.message ?? String(e);
}
