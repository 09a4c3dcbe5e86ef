"""signal_svc: market data, indicators, the signal engine and scheduler, signal history
and live streams."""
