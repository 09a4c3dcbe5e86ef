"""The bot's embeds: a signal as a trader reads it, and long content paged within
Discord's limits with nothing dropped."""

from __future__ import annotations

from datetime import UTC, datetime

from notifier.messages import (
    BUY_GREEN,
    FIELDS_LIMIT,
    HOLD_GREY,
    SignalView,
    error_embed,
    paged,
    signal_embed,
    within_limits,
)

CANDLE = datetime(2017, 6, 16, 4, tzinfo=UTC)


def view(**changes) -> SignalView:
    values = dict(
        id="812",
        pair="USD/JPY",
        timeframe="1d",
        action="buy",
        confidence=0.6843,
        strength="moderate",
        entry=110.9,
        stop_loss=109.7346,
        take_profit=113.2311,
        risk_reward=2.0,
        from_model=True,
        model="lstm_daily v1",
        candle_time=CANDLE,
    )
    return SignalView(**{**values, **changes})


def test_a_signal_embed_says_what_a_trader_needs():
    embed = signal_embed(view())
    assert embed["title"] == "USD/JPY 1d — BUY" and embed["color"] == BUY_GREEN
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Confidence"] == "68%" and fields["Strength"] == "moderate"
    assert (fields["Entry"], fields["Stop-loss"], fields["Take-profit"]) == (
        "110.900",
        "109.735",
        "113.231",
    )
    assert fields["Risk/reward"] == "1 : 2.00" and fields["Source"] == "model lstm_daily v1"
    assert fields["Candle"] == f"<t:{int(CANDLE.timestamp())}:f>"
    assert within_limits(embed)


def test_a_hold_from_the_fallback_has_no_levels():
    embed = signal_embed(
        view(
            pair="EUR/USD",
            action="hold",
            stop_loss=None,
            take_profit=None,
            risk_reward=None,
            from_model=False,
            entry=1.12345,
        )
    )
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert embed["color"] == HOLD_GREY and fields["Entry"] == "1.12345"
    assert fields["Stop-loss"] == fields["Risk/reward"] == "—"
    assert fields["Source"] == "technical fallback (no model)"


def test_long_lists_are_paged_within_limits_with_every_row_kept():
    rows = [(f"Position {n}", f"EUR/USD buy 0.10 lot, PnL +{n}.0 pips " * 3) for n in range(80)]
    rows.append(("A very long note", "x" * 2500))  # longer than one field value
    pages = paged("Open positions", rows)
    assert len(pages) > 3 and all(within_limits(p) for p in pages)
    assert all(len(p["fields"]) <= FIELDS_LIMIT for p in pages)
    assert pages[0]["title"] == f"Open positions (page 1/{len(pages)})"
    shown = [f for p in pages for f in p["fields"]]
    assert [f["name"] for f in shown[:80]] == [name for name, _ in rows[:80]]
    assert "".join(f["value"] for f in shown[80:]) == "x" * 2500


def test_one_page_keeps_its_plain_title_and_errors_say_what_to_do():
    assert paged("Subscriptions", [("EUR/USD", "1h, 4h")])[0]["title"] == "Subscriptions"
    embed = error_embed(
        "Your Discord account is not linked", "Create a code at … and send /link CODE"
    )
    assert within_limits(embed) and "link" in embed["description"]
