"""Migration 0003 fills the signal-interest index from the preferences users already
have (a database upgraded in place loses no recipient)."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, text

from common.migrations import alembic_config


def test_existing_preferences_become_interest_rows(tmp_path):
    url = f"sqlite:///{tmp_path}/auth.db"
    config = alembic_config("auth_svc", url.replace("sqlite://", "sqlite+aiosqlite://"))
    command.upgrade(config, "0002")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO auth_users VALUES ('u1', 'a@x.io', 'a@x.io', 'ann', 'ann', 'h', "
                "'2026-01-01 00:00:00')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO auth_preferences VALUES ('u1', :pairs, :timeframes, 0.6, 1, 1, "
                "'2026-01-01 00:00:00')"
            ),
            {"pairs": '["EUR/USD", "GBP/JPY"]', "timeframes": '["1h", "1d"]'},
        )
    command.upgrade(config, "head")
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT user_id, pair, timeframe FROM auth_signal_interests ORDER BY 2, 3")
        ).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [
        ("u1", "EUR/USD", "1d"),
        ("u1", "EUR/USD", "1h"),
        ("u1", "GBP/JPY", "1d"),
        ("u1", "GBP/JPY", "1h"),
    ]
