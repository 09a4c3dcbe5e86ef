"""Settings of every AIFX component, read from `AIFX_*` environment variables and `.env`.

One model per concern (`StorageSettings`, `NetworkSettings`, `StrategySettings`, ...),
each reading its own variables, gathered in `Settings` for the wiring code. The wiring
(`server.py` of each service, the Envoy renderer, the readiness banner) holds the whole
`Settings`; domain objects are handed only the group they use (the signal engine gets
`StrategySettings`, never the database URL). Variable names are the field names with
the `AIFX_` prefix, whatever the group (`AIFX_REDIS_URL`, `AIFX_STOP_LOSS_ATR`), so
every field name is unique across groups.

`Settings.load(**overrides)` builds them all (tests and benchmarks pass flat overrides
such as `redis_url=...`, routed to the group that owns the name); `settings.replace(...)`
is a copy with some fields changed.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_FILE = ".env"
DISCORD_API = "https://discord.com/api/v10"


def _split_commas(value: object) -> object:
    """`a, b` in an environment variable is the list ["a", "b"]."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


CommaList = Annotated[list[str], NoDecode, BeforeValidator(_split_commas)]


class _Group(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AIFX_",
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        protected_namespaces=(),
    )


# The components AIFX_COMPACT runs in one process (stack/core.py), the first one's
# metrics port serving all of theirs.
COMPACT_CORE = ("signal", "inference", "auth", "position")


class GeneralSettings(_Group):
    env: Literal["development", "production", "test"] = "development"
    log_format: Literal["console", "json"] = "console"
    log_level: str = "INFO"
    var_dir: Path = REPO_ROOT / "var"
    bind_host: str = "127.0.0.1"
    # How many of each stateless service `make run` starts (auth, signal, position, edge
    # and the notifier); more than one needs Redis and PostgreSQL (common/replicas.py).
    replicas: int = Field(default=1, ge=1, le=9)
    # `make run` with the core services (COMPACT_CORE) in one process instead of one
    # each: ~150 MB less on a small machine, but one crash restarts all four together,
    # and their metrics are all on the signal service's metrics port. One replica only.
    compact: bool = False
    # Tracing (common/tracing.py): the OTLP/gRPC collector spans go to, e.g.
    # http://127.0.0.1:4317; empty turns tracing off (nothing is installed, no cost).
    otlp_endpoint: str = ""
    # The share of the traces started here that are kept, 0..1 (a call keeps or drops
    # its trace as its caller decided).
    otlp_sample_ratio: float = Field(default=1.0, ge=0, le=1)

    def ensure_var_dir(self) -> Path:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        return self.var_dir


class StorageSettings(_Group):
    # Empty means the embedded SQLite database in var_dir (Settings.database_url).
    database_url: str = ""
    database_pool_size: int = 10
    # PostgreSQL failing fast (README "Reliability and security"): a new connection
    # gives up after this long; a request waits this long for a free pooled connection
    # (slow queries holding them all) before it gets UNAVAILABLE; the server cancels a
    # statement running longer. None of them applies to migrations. Envoy retries an
    # UNAVAILABLE read up to 3 times within its 15 s route timeout, so a read stuck on
    # a lock must time out in well under 15 / 4 s to reach the client as a 503.
    database_connect_timeout_seconds: float = 3.0
    database_pool_timeout_seconds: float = 1.0
    database_statement_timeout_seconds: float = 3.0
    # Empty means in-process caches, fan-out and rate limits.
    redis_url: str = ""
    redis_prefix: str = "aifx:"
    # Prefix of the shared access-token revocation list (auth_svc writes it, every
    # service reads it); empty means redis_prefix. Lets one service keep its own keys
    # apart while still seeing logouts.
    revocation_redis_prefix: str = ""

    @property
    def effective_revocation_prefix(self) -> str:
        return self.revocation_redis_prefix or self.redis_prefix


class NetworkSettings(_Group):
    """Where each component listens, and where the others find it."""

    auth_port: int = 50051
    signal_port: int = 50052
    position_port: int = 50053
    inference_port: int = 50054
    model_server_port: int = 8500
    edge_port: int = 8081
    envoy_port: int = 8080
    envoy_admin_port: int = 9901
    # Prometheus scrape ports; 0 turns a component's metrics endpoint off.
    auth_metrics_port: int = 9101
    signal_metrics_port: int = 9102
    position_metrics_port: int = 9103
    inference_metrics_port: int = 9104
    model_server_metrics_port: int = 9106
    edge_metrics_port: int = 9105
    # Where a client finds each service; empty means 127.0.0.1 with its default port.
    # The model server may be ours or a real tensorflow_model_server.
    auth_target: str = ""
    signal_target: str = ""
    position_target: str = ""
    inference_target: str = ""
    model_server_target: str = ""
    # Peers whose X-Forwarded-For is trusted to name the real client, and whose
    # x-envoy-original-path may carry a query token (Envoy on loopback).
    trusted_proxies: CommaList = ["127.0.0.1", "::1"]

    @property
    def effective_auth_target(self) -> str:
        return self.auth_target or f"127.0.0.1:{self.auth_port}"

    @property
    def effective_signal_target(self) -> str:
        return self.signal_target or f"127.0.0.1:{self.signal_port}"

    @property
    def effective_position_target(self) -> str:
        return self.position_target or f"127.0.0.1:{self.position_port}"

    @property
    def effective_inference_target(self) -> str:
        return self.inference_target or f"127.0.0.1:{self.inference_port}"

    @property
    def effective_model_server_target(self) -> str:
        return self.model_server_target or f"127.0.0.1:{self.model_server_port}"


class MarketSettings(_Group):
    """Which market data signal_svc reads, and which series get signals."""

    # "replay" (the real bundled history, or market_data_csv, replayed on a clock), or
    # "live" (Yahoo Finance). Offline only replayable pairs are offered.
    market_data_mode: Literal["replay", "live"] = "replay"
    market_data_csv: Path | None = None
    # How often the live provider asks Yahoo for new bars.
    market_data_poll_seconds: float = Field(default=60.0, gt=0)
    # Where Yahoo Finance is asked (live mode): empty for Yahoo itself, or the base URL
    # of a server that answers Yahoo's endpoints in its place (a mirror, or the tests'
    # local stand-in), e.g. "http://127.0.0.1:8765".
    yahoo_base_url: str = ""
    # Replay clock speed: market seconds per real second (3600: an hour bar closes every
    # second, for demos).
    replay_speed: float = Field(default=3600.0, gt=0)
    # When the replayed history runs out, start again from its beginning (a new "lap":
    # signals are stored per lap, open positions are closed as the prices go back in
    # time). Off: the replay stops and says so (ListPairs, the "replay" health check).
    replay_loop: bool = False
    # Series the scheduler produces a signal for at each candle close: every pair x
    # timeframe of these that has market data (the default: the majors and crosses on
    # the daily ECB fixings, EUR/USD also on its hourly and 4h bars).
    signal_pairs: CommaList = [
        "EUR/USD", "GBP/USD", "USD/JPY", "USD/CHF", "AUD/USD",
        "USD/CAD", "NZD/USD", "EUR/GBP", "EUR/JPY", "GBP/JPY",
    ]  # fmt: skip
    signal_timeframes: CommaList = ["1h", "4h", "1d"]


class StrategySettings(_Group):
    """How the signal engine turns a prediction and the indicators into a trade."""

    # Stop-loss / take-profit distances from entry, in ATR(14) multiples.
    stop_loss_atr: float = Field(default=1.5, gt=0)
    take_profit_atr: float = Field(default=3.0, gt=0)
    # Confidence cap of technical-fallback signals (they are not calibrated).
    fallback_max_confidence: float = Field(default=0.6, ge=0, le=1)
    # Confidence at which a signal becomes moderate, strong, very strong.
    strength_thresholds: Annotated[list[float], NoDecode, BeforeValidator(_split_commas)] = [
        0.5,
        0.6,
        0.75,
    ]
    # A slower inference answer counts as a failure: the signal comes from the
    # technical rules instead (marked as fallback).
    inference_timeout_seconds: float = Field(default=0.5, gt=0)
    # After 3 failed predictions in a row signal_svc stops asking (technical fallback at
    # no cost) for this long, then tries once: how soon a recovered model is noticed.
    inference_recovery_seconds: float = Field(default=30.0, gt=0)

    @field_validator("strength_thresholds")
    @classmethod
    def _three_thresholds(cls, value: list[float]) -> list[float]:
        if len(value) != 3 or value != sorted(value):
            raise ValueError("needs three increasing values: moderate, strong, very strong")
        return value


class StreamSettings(_Group):
    """Live streams of signals and position events."""

    # Idle streams get a heartbeat this often, so proxies keep them open.
    stream_heartbeat_seconds: float = Field(default=15.0, gt=0)
    # Signals buffered per subscriber; one that falls this far behind is disconnected
    # (it can resume from its last id, losing nothing).
    subscriber_buffer: int = Field(default=256, ge=1)
    # GetSignal answers from process memory for this long before asking the shared
    # cache (Redis) again: another replica's new signal is seen at most this late (this
    # replica's own are seen at once). 0 turns the memo off.
    signal_memo_seconds: float = Field(default=0.5, ge=0)
    # Concurrent streams (gRPC or Server-Sent Events: signals, prices, position events)
    # one user may hold open on each replica; the next is refused RESOURCE_EXHAUSTED
    # (429) until one closes.
    max_streams_per_user: int = Field(default=10, ge=1)


class PositionSettings(_Group):
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


class ModelSettings(_Group):
    """The served model: the model server's layout and batching, the inference
    service's patience with it."""

    # The models served, as TF Serving's --model_config_file (text ModelServerConfig;
    # relative base paths from the working directory): the model server loads every
    # model in it, and the inference service routes each series to the model whose
    # metadata covers its timeframe (lstm: 1h, lstm_daily: 1d).
    model_config_file: Path | None = REPO_ROOT / "models" / "models.config"
    # One model in the TF Serving layout (models/<name>/<version>/) instead of the file:
    # setting either of these (and not the file) serves only that model. The inference
    # service reads each version's aifx_metadata.json from the base path too.
    model_name: str = "lstm"
    model_base_path: Path = REPO_ROOT / "models" / "lstm"

    @field_validator("model_config_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        """AIFX_MODEL_CONFIG_FILE= (empty) means no file."""
        return None if value == "" else value

    @model_validator(mode="before")
    @classmethod
    def _one_model_when_named(cls, data: Any) -> Any:
        """AIFX_MODEL_NAME / AIFX_MODEL_BASE_PATH without a config file mean that one
        model (as tensorflow_model_server's --model_name/--model_base_path do)."""
        if (
            isinstance(data, dict)
            and ("model_name" in data or "model_base_path" in data)
            and "model_config_file" not in data
        ):
            return {**data, "model_config_file": None}
        return data

    # A Predict slower than this is UNAVAILABLE: callers fall back rather than wait.
    model_server_timeout_seconds: float = Field(default=1.0, gt=0)
    # Server-side batching in the model server (python -m inference.model_server):
    # concurrent Predicts merged into runs of at most max_batch_size rows, each
    # dispatched at once when a thread is free, or after timeout_micros if it is not full.
    model_server_enable_batching: bool = False
    model_server_max_batch_size: int = Field(default=64, ge=1)
    model_server_batch_timeout_micros: int = Field(default=0, ge=0)


class TokenSettings(_Group):
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


class LoginSettings(_Group):
    """Passwords and the limits on guessing them."""

    bcrypt_rounds: int = Field(default=12, ge=4, le=16)
    # Threads that hash passwords. One leaves the other core to the event loop, so a
    # burst of logins never stalls other RPCs on a 2-core machine.
    password_hash_workers: int = Field(default=1, ge=1)
    # Failed logins allowed (limits notation) per identifier and per client address.
    login_failure_limit_per_identifier: str = "5/5minutes"
    login_failure_limit_per_address: str = "20/5minutes"
    # Registrations allowed (every attempt that passes validation counts: an attempt
    # also tells whether a name is taken) per client address. Generous enough for an
    # office behind one NAT, low enough to stop mass account creation.
    registration_limit_per_address: str = "100/hour"


class EdgeSettings(_Group):
    # Envoy worker threads. One keeps Envoy from competing with the Python services for
    # the cores of a small machine (measured: p99 of GetMe 15-20 ms with 1, 52-73 ms
    # with 2 on 2 cores); raise it on a dedicated edge host.
    envoy_concurrency: int = Field(default=1, ge=1)
    # Browser origins allowed by CORS, comma separated.
    cors_allowed_origins: CommaList = [
        "http://localhost:8080",
        "http://127.0.0.1:8080",
        "http://localhost:8081",
        "http://127.0.0.1:8081",
    ]
    # The built dashboard the edge serves (`npm run build` in edge/dashboard).
    dashboard_dir: Path = REPO_ROOT / "edge" / "dashboard" / "dist"
    # Concurrent Socket.IO connections one user may hold on each edge replica (tabs,
    # devices); the next is refused with a connect_error saying so.
    max_sockets_per_user: int = Field(default=32, ge=1)
    # TLS at Envoy: with both files (PEM) set, the public listener speaks HTTPS only and
    # every response carries Strict-Transport-Security; with neither, plain HTTP.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Slow-loris bounds at Envoy: the time a client has to send a request's headers,
    # and how long a connection with no request in flight is kept open.
    envoy_request_headers_timeout_seconds: float = Field(default=10.0, gt=0)
    envoy_idle_timeout_seconds: float = Field(default=60.0, gt=0)

    @field_validator("tls_cert_file", "tls_key_file", mode="before")
    @classmethod
    def _empty_path_is_none(cls, value: object) -> object:
        """AIFX_TLS_CERT_FILE= (empty) means no TLS."""
        return None if value == "" else value

    @model_validator(mode="after")
    def _tls_needs_both(self) -> Self:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TLS needs both tls_cert_file and tls_key_file")
        return self

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert_file is not None and self.tls_key_file is not None


class DiscordSettings(_Group):
    """The notifier: the Discord bot's token and where it finds Discord."""

    # The bot token from the Discord developer portal (Bot → Reset Token). Empty: the
    # bot is off and `make run` does not start the notifier.
    discord_token: SecretStr = SecretStr("")
    # Discord's REST API base; the gateway is asked of it (GET /gateway/bot). Point it at
    # a stand-in (tests/discord_standin.py) to try the bot without Discord.
    discord_api_base: str = DISCORD_API
    # Servers whose slash commands are synced at start (they appear at once there);
    # global commands are always synced and may take a while to show everywhere.
    discord_command_guilds: CommaList = []
    # The notifier's gRPC port (health and reflection only) and metrics port.
    notifier_port: int = 50055
    notifier_metrics_port: int = 9107
    # DMs sent per pass over the ledger; a pass stops early when Discord struggles.
    notifier_send_batch: int = Field(default=100, ge=1)
    # Users DMed at once: enough that Discord's round trip does not bound the rate (at
    # 100 ms a request, 5 in flight make the 50 requests a second of the global limit).
    notifier_send_concurrency: int = Field(default=10, ge=1)
    # Discord's global limit for the bot, requests per second (50 unless Discord raised
    # it): the notifier paces its DMs under it instead of drawing 429s.
    discord_global_limit: int = Field(default=50, ge=1)
    # Gateway sharding when several notifiers run: this one is shard `discord_shard_id`
    # of `discord_shard_count`, so each guild's slash commands reach exactly one of them
    # (DMs are shared out by the delivery ledger's claims instead).
    discord_shard_id: int = Field(default=0, ge=0)
    discord_shard_count: int = Field(default=1, ge=1)
    # How long a notifier's claim on the deliveries it is sending holds: a replica that
    # dies mid-pass leaves them to another this much later.
    notifier_claim_seconds: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _shard_in_range(self) -> Self:
        if self.discord_shard_id >= self.discord_shard_count:
            raise ValueError(
                f"AIFX_DISCORD_SHARD_ID ({self.discord_shard_id}) must be below "
                f"AIFX_DISCORD_SHARD_COUNT ({self.discord_shard_count})"
            )
        return self


class Settings(BaseModel):
    """Every setting, by concern; each has a default that runs the embedded stack on
    one machine."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    general: GeneralSettings
    storage: StorageSettings
    network: NetworkSettings
    market: MarketSettings
    strategy: StrategySettings
    streams: StreamSettings
    positions: PositionSettings
    model: ModelSettings
    tokens: TokenSettings
    logins: LoginSettings
    edge: EdgeSettings
    discord: DiscordSettings

    @classmethod
    def load(cls, env_file: str | None = ENV_FILE, **overrides: Any) -> Self:
        """Every group from the environment (and `env_file`; None reads none), with
        `overrides` (flat field names) taking precedence. TypeError names an override
        that no group has."""
        _refuse_unknown(overrides)
        groups = {
            name: group(_env_file=env_file, **_own(group, overrides))  # type: ignore[call-arg]
            for name, group in _groups().items()
        }
        return cls.model_validate(groups)

    def replace(self, **overrides: Any) -> Self:
        """A copy with `overrides` (flat field names, validated) applied."""
        _refuse_unknown(overrides)
        changed = {}
        for name, group in _groups().items():
            own = _own(group, overrides)
            if own:
                current = getattr(self, name)
                changed[name] = group.model_validate({**current.model_dump(), **own})
        return self.model_copy(update=changed)

    @property
    def database_url(self) -> str:
        """The configured database, or the embedded SQLite file in var_dir."""
        if self.storage.database_url:
            return self.storage.database_url
        return f"sqlite+aiosqlite:///{self.general.var_dir / 'aifx.db'}"


def _groups() -> dict[str, type[_Group]]:
    return {
        name: field.annotation  # type: ignore[misc]
        for name, field in Settings.model_fields.items()
    }


def _own(group: type[_Group], overrides: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in overrides.items() if key in group.model_fields}


def _refuse_unknown(overrides: dict[str, Any]) -> None:
    known = {key for group in _groups().values() for key in group.model_fields}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"no such setting: {', '.join(unknown)}")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings.load()
