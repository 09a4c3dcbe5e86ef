// The Socket.IO connection: signals, quotes, position notifications, token upkeep.

import { io, type Socket } from "socket.io-client";
import { useSyncExternalStore } from "react";
import { session } from "./api";
import { signalFromSocket, type PositionNotification, type Quote, type Signal } from "./types";

export interface Store<T> {
  get: () => T;
  set: (v: T) => void;
  subscribe: (l: () => void) => () => void;
}

export function createStore<T>(initial: T): Store<T> {
  let value = initial;
  const listeners = new Set<() => void>();
  return {
    get: () => value,
    set: (v) => {
      value = v;
      for (const l of listeners) l();
    },
    subscribe: (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
  };
}

export function useStore<T>(store: Store<T>): T {
  return useSyncExternalStore(store.subscribe, store.get, store.get);
}

class Emitter<T> {
  private ls = new Set<(v: T) => void>();
  on(l: (v: T) => void): () => void {
    this.ls.add(l);
    return () => this.ls.delete(l);
  }
  emit(v: T) {
    for (const l of this.ls) l(v);
  }
}

export type ConnState = "connecting" | "live" | "reconnecting" | "offline";

export interface MarketRow {
  pair: string;
  signal: string | null;
  confidence: number | null;
  price: number;
  change: number;
  changePercent: number;
}

export const connection = createStore<ConnState>("offline");
export const quotes = createStore<Record<string, Quote>>({});
export const market = createStore<MarketRow[]>([]);
export const signalEvents = new Emitter<Signal>();
export const notificationEvents = new Emitter<PositionNotification>();
export const socketErrors = new Emitter<{ message: string; code: string }>();

class Live {
  private socket: Socket | null = null;
  private lastSignalId: string | undefined;
  private lastNotificationId: string | undefined;
  private seenSignals = new Set<string>();
  private seenNotifications = new Set<string>();
  private priceRefs = new Map<string, number>();
  private unsubscribeSession: (() => void) | null = null;
  private token: string | null = null;

  start() {
    if (this.socket) return;
    this.token = session.state.token;
    const socket = io({
      path: "/socket.io/",
      auth: { token: this.token },
      transports: ["websocket", "polling"],
      tryAllTransports: true,
      reconnectionDelayMax: 10000,
    });
    this.socket = socket;
    connection.set("connecting");

    socket.on("connect", () => {
      connection.set("live");
      socket.emit("subscribe:signals", this.lastSignalId ? { lastSignalId: this.lastSignalId } : {});
      socket.emit(
        "subscribe:notifications",
        this.lastNotificationId ? { lastNotificationId: this.lastNotificationId } : {},
      );
      for (const pair of this.priceRefs.keys()) socket.emit("subscribe:price", pair);
    });

    socket.on("connect_error", async (err: Error & { data?: { code?: string } }) => {
      if (err.data?.code === "UNAUTHENTICATED") {
        connection.set("reconnecting");
        const fresh = await session.refresh();
        if (fresh && this.socket === socket) {
          socket.auth = { token: fresh };
          socket.connect();
        } else if (!fresh) {
          connection.set("offline");
        }
        return;
      }
      connection.set(socket.active ? "reconnecting" : "offline");
    });

    socket.on("disconnect", async (reason) => {
      if (this.socket !== socket) return;
      if (reason === "io client disconnect") {
        connection.set("offline");
        return;
      }
      connection.set("reconnecting");
      if (reason === "io server disconnect") {
        // The server ended it (e.g. TOKEN_EXPIRED): a fresh token, then again.
        const fresh = await session.refresh();
        if (fresh && this.socket === socket) {
          socket.auth = { token: fresh };
          socket.connect();
        } else {
          connection.set("offline");
        }
      }
    });
    socket.io.on("reconnect_attempt", () => connection.set("reconnecting"));
    socket.io.on("reconnect_failed", () => connection.set("offline"));

    socket.on("trading:signal", (raw: Record<string, unknown>) => {
      const s = signalFromSocket(raw);
      this.lastSignalId = s.id;
      if (this.seenSignals.has(s.id)) return;
      this.seenSignals.add(s.id);
      if (this.seenSignals.size > 2000) this.seenSignals = new Set([...this.seenSignals].slice(-1000));
      signalEvents.emit(s);
    });

    socket.on("market:update", (raw: { pairs?: MarketRow[] }) => {
      if (Array.isArray(raw?.pairs)) market.set(raw.pairs);
    });

    socket.on("notification", (n: PositionNotification) => {
      const id = String(n.id);
      this.lastNotificationId = id;
      if (this.seenNotifications.has(id)) return;
      this.seenNotifications.add(id);
      notificationEvents.emit(n);
    });

    socket.on("error", async (e: { message?: string; code?: string }) => {
      const code = e?.code ?? "ERROR";
      if (code === "TOKEN_EXPIRED" || code === "UNAUTHENTICATED") {
        await session.refresh();
        return;
      }
      socketErrors.emit({ message: e?.message ?? "Live connection error", code });
    });

    socket.on("auth:expiring", () => {
      // The session listener below sends `auth:refresh` with the new token.
      void session.refresh();
    });

    socket.onAny((event: string, data: Quote) => {
      if (event.startsWith("price:") && data && typeof data.price === "number") {
        quotes.set({ ...quotes.get(), [data.pair]: data });
      }
    });

    this.unsubscribeSession = session.subscribe((st) => {
      if (st.token && st.token !== this.token) {
        this.token = st.token;
        socket.auth = { token: st.token };
        if (socket.connected) socket.emit("auth:refresh", { token: st.token });
      }
    });
  }

  stop() {
    this.unsubscribeSession?.();
    this.unsubscribeSession = null;
    const s = this.socket;
    this.socket = null;
    s?.disconnect();
    this.lastSignalId = undefined;
    this.lastNotificationId = undefined;
    this.seenSignals.clear();
    this.seenNotifications.clear();
    connection.set("offline");
  }

  /** Quotes of `pair` while the returned function is not called. */
  watchPrice(pair: string): () => void {
    const n = this.priceRefs.get(pair) ?? 0;
    this.priceRefs.set(pair, n + 1);
    if (n === 0 && this.socket?.connected) this.socket.emit("subscribe:price", pair);
    return () => {
      const m = (this.priceRefs.get(pair) ?? 1) - 1;
      if (m > 0) {
        this.priceRefs.set(pair, m);
        return;
      }
      this.priceRefs.delete(pair);
      if (this.socket?.connected) this.socket.emit("unsubscribe:price", pair);
    };
  }

  /** Remember ids seen through REST so a resume starts after them. */
  noteSignal(id: string) {
    this.seenSignals.add(id);
  }
}

export const live = new Live();
