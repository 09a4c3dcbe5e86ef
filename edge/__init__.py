"""edge: the browser-facing pieces behind Envoy (Envoy launch helpers; later the
WebSocket bridge and the dashboard)."""
