"""position_svc: positions users record, stop-loss / take-profit watching, PnL and
performance."""
