"""Settings of every AIFX component, read from `AIFX_*` environment variables and `.env`.

One class for the whole platform keeps names and defaults in one place, so the
supervisor, Envoy's config renderer and each service agree on ports and addresses
without passing them around.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every setting has a default that runs the embedded stack on one machine."""

    model_config = SettingsConfigDict(
        env_prefix="AIFX_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- general ---------------------------------------------------------------------
    env: Literal["development", "production", "test"] = "development"
    log_format: Literal["console", "json"] = "console"
    log_level: str = "INFO"
    var_dir: Path = REPO_ROOT / "var"
    bind_host: str = "127.0.0.1"

    # --- storage ---------------------------------------------------------------------
    # Empty means the embedded SQLite database in var_dir.
    database_url: str = ""
    database_pool_size: int = 10
    # Empty means in-process caches, fan-out and rate limits.
    redis_url: str = ""
    redis_prefix: str = "aifx:"
    # Prefix of the shared access-token revocation list (auth_svc writes it, every
    # service reads it); empty means redis_prefix. Lets one service keep its own keys
    # apart while still seeing logouts.
    revocation_redis_prefix: str = ""

    # --- ports -----------------------------------------------------------------------
    auth_port: int = 50051
    signal_port: int = 50052
    position_port: int = 50053
    inference_port: int = 50054
    model_server_port: int = 8500
    edge_port: int = 8081
    envoy_port: int = 8080
    envoy_admin_port: int = 9901
    auth_metrics_port: int = 9101
    inference_metrics_port: int = 9104
    model_server_metrics_port: int = 9106

    signal_metrics_port: int = 9102
    position_metrics_port: int = 9103

    # --- signals ----------------------------------------------------------------------
    # Where the signal service finds auth_svc (for the JWKS that verifies tokens) and the
    # inference service; empty means 127.0.0.1 with their default ports.
    auth_target: str = ""
    inference_target: str = ""
    # A slower inference answer counts as a failure: the signal comes from the
    # technical rules instead (marked as fallback).
    inference_timeout_seconds: float = 0.5
    # Series the scheduler produces a signal for at each candle close.
    signal_pairs: Annotated[list[str], NoDecode] = ["EUR/USD"]
    signal_timeframes: Annotated[list[str], NoDecode] = ["1h"]
    # Market data: "replay" (the real bundled history, or market_data_csv, replayed on a
    # clock), or "live" (Yahoo Finance). Offline only replayable pairs are offered.
    market_data_mode: Literal["replay", "live"] = "replay"
    market_data_csv: Path | None = None
    # How often the live provider asks Yahoo for new bars.
    market_data_poll_seconds: float = Field(default=60.0, gt=0)
    # Replay clock speed: market seconds per real second (3600: an hour bar closes every
    # second, for demos).
    replay_speed: float = Field(default=3600.0, gt=0)
    # Stop-loss / take-profit distances from entry, in ATR(14) multiples.
    stop_loss_atr: float = Field(default=1.5, gt=0)
    take_profit_atr: float = Field(default=3.0, gt=0)
    # Confidence cap of technical-fallback signals (they are not calibrated).
    fallback_max_confidence: float = Field(default=0.6, ge=0, le=1)
    # Confidence at which a signal becomes moderate, strong, very strong.
    strength_thresholds: Annotated[list[float], NoDecode] = [0.5, 0.6, 0.75]
    # Idle streams get a heartbeat this often, so proxies keep them open.
    stream_heartbeat_seconds: float = Field(default=15.0, gt=0)
    # Signals buffered per subscriber; one that falls this far behind is disconnected
    # (it can resume from its last id, losing nothing).
    subscriber_buffer: int = Field(default=256, ge=1)
    # GetSignal answers from process memory for this long before asking the shared
    # cache (Redis) again: another replica's new signal is seen at most this late (this
    # replica's own are seen at once). 0 turns the memo off.
    signal_memo_seconds: float = Field(default=0.5, ge=0)

    # --- positions --------------------------------------------------------------------
    # Where the position service finds signal_svc (prices); empty means 127.0.0.1 with
    # its default port.
    signal_target: str = ""
    # Every open position gets a monitoring snapshot (price, unrealized PnL) this often,
    # and its levels are re-checked against the latest price (catch-up after a dropped
    # price stream).
    position_sweep_seconds: float = Field(default=60.0, gt=0)
    # Monitoring snapshots older than this are deleted by the sweep.
    position_snapshot_retention_days: float = Field(default=7.0, gt=0)
    # How often each replica looks for position events committed by another replica
    # (events of its own are delivered at once).
    position_event_poll_seconds: float = Field(default=0.5, gt=0)
    # Events buffered per event-stream subscriber; one that falls this far behind is
    # disconnected (it resumes from its last event id, losing nothing).
    position_event_buffer: int = Field(default=1024, ge=1)

    # --- model ------------------------------------------------------------------------
    # The TF Serving layout the model server serves (models/<name>/<version>/); the
    # inference service reads each version's aifx_metadata.json from here too.
    model_name: str = "lstm"
    model_base_path: Path = REPO_ROOT / "models" / "lstm"
    # Where the inference service finds the model server (ours or a real
    # tensorflow_model_server); empty means 127.0.0.1:model_server_port.
    model_server_target: str = ""
    # A Predict slower than this is UNAVAILABLE: callers fall back rather than wait.
    model_server_timeout_seconds: float = 1.0
    # Server-side batching in the model server (python -m inference.model_server):
    # concurrent Predicts merged into runs of at most max_batch_size rows, each
    # dispatched at once when a thread is free, or after timeout_micros if it is not full.
    model_server_enable_batching: bool = False
    model_server_max_batch_size: int = Field(default=64, ge=1)
    model_server_batch_timeout_micros: int = Field(default=0, ge=0)

    # --- tokens ----------------------------------------------------------------------
    # PEM of the Ed25519 private key that signs access tokens. Empty: read
    # jwt_private_key_file, or generate one there on first run (embedded default).
    jwt_private_key: SecretStr = SecretStr("")
    jwt_private_key_file: Path | None = None
    jwt_issuer: str = "aifx"
    jwt_audience: str = "aifx"
    access_token_ttl_seconds: int = 3600
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    # Credential that service-to-service (…Internal) calls carry in x-aifx-service-token.
    # Empty: generated into var_dir on first run.
    service_token: SecretStr = SecretStr("")

    # --- passwords and login limits --------------------------------------------------
    bcrypt_rounds: int = Field(default=12, ge=4, le=16)
    # Threads that hash passwords. One leaves the other core to the event loop, so a
    # burst of logins never stalls other RPCs on a 2-core machine.
    password_hash_workers: int = Field(default=1, ge=1)
    # Failed logins allowed (limits notation) per identifier and per client address.
    login_failure_limit_per_identifier: str = "5/5minutes"
    login_failure_limit_per_address: str = "20/5minutes"
    # Peers whose X-Forwarded-For is trusted to name the real client (Envoy on loopback).
    trusted_proxies: Annotated[list[str], NoDecode] = ["127.0.0.1", "::1"]

    # --- edge ------------------------------------------------------------------------
    # Envoy worker threads. One keeps Envoy from competing with the Python services for
    # the cores of a small machine (measured: p99 of GetMe 15-20 ms with 1, 52-73 ms
    # with 2 on 2 cores); raise it on a dedicated edge host.
    envoy_concurrency: int = Field(default=1, ge=1)
    # Browser origins allowed by CORS, comma separated.
    cors_allowed_origins: Annotated[list[str], NoDecode] = [
        "http://localhost:8080",
        "http://127.0.0.1:8080",
        "http://localhost:8081",
        "http://127.0.0.1:8081",
    ]

    @field_validator(
        "trusted_proxies",
        "cors_allowed_origins",
        "signal_pairs",
        "signal_timeframes",
        "strength_thresholds",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @property
    def effective_database_url(self) -> str:
        """The configured database, or the embedded SQLite file in var_dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.var_dir / 'aifx.db'}"

    @property
    def effective_revocation_prefix(self) -> str:
        return self.revocation_redis_prefix or self.redis_prefix

    @property
    def effective_auth_target(self) -> str:
        return self.auth_target or f"127.0.0.1:{self.auth_port}"

    @property
    def effective_signal_target(self) -> str:
        return self.signal_target or f"127.0.0.1:{self.signal_port}"

    @property
    def effective_inference_target(self) -> str:
        return self.inference_target or f"127.0.0.1:{self.inference_port}"

    @property
    def effective_model_server_target(self) -> str:
        return self.model_server_target or f"127.0.0.1:{self.model_server_port}"

    def ensure_var_dir(self) -> Path:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        return self.var_dir


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
