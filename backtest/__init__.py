"""Backtests of the signal engine's own trading rule on recorded model predictions.

`python -m backtest models/lstm_daily/<version>` replays every held-out year of a
walk-forward model version through the real `signal_svc.engine.SignalEngine`, with an
offline implementation of its `Predictions` port that answers the version's recorded
out-of-sample probabilities (`heldout_predictions.csv`), and scores the trades with
position_svc's own pips, PnL and performance functions.

Runtime environment only (no TensorFlow). The package may import the domain modules
of signal_svc and position_svc, never their gRPC, servicer or conversion modules; the
inference package must not import it (the "services-independent" contract).

Modules:
    predictions  the recorded predictions and the offline Predictions port
    simulate     the day-by-day simulation (entries, stop-loss / take-profit exits)
    report       tables, metrics.json's "backtest" and the card's Backtest section
"""
