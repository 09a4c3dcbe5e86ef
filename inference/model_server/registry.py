"""The versions of one model: which to serve, loading and unloading them as folders
appear and disappear under the base path, and resolving a request's version or label.

Mirrors TF Serving's file-system source with its default availability-preserving
policy:

- the version policy (default `latest:1`) picks the *aspired* versions out of the
  complete folders (`inference.model_format.complete_versions`);
- aspired versions not yet loaded are loaded, newest first (in a worker thread);
- loaded versions no longer aspired are unloaded once an aspired version is available,
  so a new version that fails to load never takes the old one down; when no version is
  aspired at all (every folder removed), everything is unloaded;
- a version that failed to load is retried only after its files change;
- states are reported like TF Serving's: LOADING, AVAILABLE, UNLOADING, END (END with
  an error message after a failed load).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import structlog

from common.errors import FieldViolation, InvalidArgument, NotFound
from inference.model_format import METADATA_FILE, ONNX_FILE, complete_versions
from inference.model_server.config import ModelConfig
from inference.model_server.servable import Servable

log = structlog.get_logger(__name__)

Loader = Callable[[str, int, Path], Servable]


class VersionState(Enum):
    START = "START"
    LOADING = "LOADING"
    AVAILABLE = "AVAILABLE"
    UNLOADING = "UNLOADING"
    END = "END"


@dataclass(frozen=True)
class VersionStatus:
    version: int
    state: VersionState
    error: str = ""


class ModelRegistry:
    def __init__(self, config: ModelConfig, loader: Loader) -> None:
        self.name = config.name
        self.base_path = config.base_path
        self.policy = config.policy
        self.labels = dict(config.labels)
        self._loader = loader
        self._available: dict[int, Servable] = {}
        self._status: dict[int, VersionStatus] = {}
        self._failed: dict[int, tuple[int, ...] | None] = {}
        self._poll_lock = asyncio.Lock()

    # --- requests -------------------------------------------------------------------

    @property
    def available_versions(self) -> list[int]:
        return sorted(self._available)

    def _hint(self) -> str:
        versions = ", ".join(str(v) for v in self.available_versions) or "none"
        return f" (model {self.name} serves versions: {versions})"

    def version_for_label(self, label: str) -> int:
        """The version a label names; INVALID_ARGUMENT for an unknown label, as TF
        Serving answers."""
        if label not in self.labels:
            known = ", ".join(sorted(self.labels)) or "none"
            raise InvalidArgument(
                [
                    FieldViolation(
                        "model_spec.version_label",
                        f"Unrecognized servable version label: {label} "
                        f"(model {self.name} has labels: {known})",
                    )
                ]
            )
        return self.labels[label]

    def resolve(self, version: int | None = None, label: str | None = None) -> Servable:
        """The servable a request asks for: a label, a version, or the newest."""
        if label is not None:
            version = self.version_for_label(label)
        if version is None:
            if not self._available:
                raise NotFound(f"Servable not found for request: Latest({self.name}){self._hint()}")
            return self._available[max(self._available)]
        servable = self._available.get(version)
        if servable is None:
            raise NotFound(
                f"Servable not found for request: Specific({self.name}, {version}){self._hint()}"
            )
        return servable

    def statuses(self, version: int | None = None, label: str | None = None) -> list[VersionStatus]:
        """Every version this server has known (ascending), or the one asked for."""
        if label is not None:
            version = self.version_for_label(label)
        if not self._status:
            raise NotFound(f"Could not find any versions of model {self.name}")
        if version is None:
            return [self._status[v] for v in sorted(self._status)]
        if version not in self._status:
            raise NotFound(f"Could not find version {version} of model {self.name}")
        return [self._status[version]]

    # --- loading --------------------------------------------------------------------

    def _fingerprint(self, version: int) -> tuple[int, ...] | None:
        folder = self.base_path / str(version)
        try:
            return tuple((folder / name).stat().st_mtime_ns for name in (METADATA_FILE, ONNX_FILE))
        except OSError:
            return None

    async def poll(self) -> None:
        """One pass over the base path: load what is aspired, unload what is not."""
        async with self._poll_lock:
            complete = await asyncio.to_thread(complete_versions, self.base_path)
            aspired = self.policy.aspired(complete)
            for version in sorted(aspired - set(self._available), reverse=True):
                fingerprint = await asyncio.to_thread(self._fingerprint, version)
                if version in self._failed and self._failed[version] == fingerprint:
                    continue
                await self._load(version, fingerprint)
            if not aspired or aspired & set(self._available):
                for version in sorted(set(self._available) - aspired):
                    self._unload(version)

    async def _load(self, version: int, fingerprint: tuple[int, ...] | None) -> None:
        path = self.base_path / str(version)
        self._status[version] = VersionStatus(version, VersionState.LOADING)
        log.info("loading", model=self.name, version=version, path=str(path))
        try:
            servable = await asyncio.to_thread(self._loader, self.name, version, path)
        except Exception as exc:
            self._failed[version] = fingerprint
            self._status[version] = VersionStatus(version, VersionState.END, str(exc))
            log.error("load failed", model=self.name, version=version, error=str(exc))
            return
        self._failed.pop(version, None)
        self._available[version] = servable
        self._status[version] = VersionStatus(version, VersionState.AVAILABLE)
        log.info("available", model=self.name, version=version)

    def _unload(self, version: int) -> None:
        # In-flight requests keep their reference; the session is freed after them.
        self._status[version] = VersionStatus(version, VersionState.UNLOADING)
        self._available.pop(version, None)
        self._status[version] = VersionStatus(version, VersionState.END)
        log.info("unloaded", model=self.name, version=version)
