"""Follows the registry alias from a background thread, so the job scores with what it names."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from dse_platform.config import Settings
from dse_platform.errors import PlatformError
from dse_platform.serving import database

log = logging.getLogger("dse.stream")


@dataclass
class LoadedModel:
    version: str
    model: Any


class ModelWatcher:
    """Follows the registry alias from a background thread; scoring reads `current` without waiting.

    A moved alias is loaded and swapped in (recorded as a ``reloaded`` model event);
    an unreachable registry keeps the last model and says so once per outage.
    """

    def __init__(self, settings: Settings, engine) -> None:
        self.settings, self.engine = settings, engine
        self.current: LoadedModel | None = None
        self._stop = threading.Event()
        self._outage = False
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)

    def start(self) -> ModelWatcher:
        self.poll()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.stream_model_poll_s):
            self.poll()

    def poll(self) -> None:
        from dse_platform.model import registry

        try:
            ref = registry.production_ref(self.settings, registry.connect(self.settings))
        except Exception as exc:  # any registry failure (HTTP, MLflow, PlatformError): keep serving
            if not self._outage:
                held = self.current.version if self.current else "none"
                log.warning("registry unreachable (%s); keeping model version %s", exc, held)
                database.record_event(self.engine, "registry_unreachable", self.settings.model_name,
                                        version=held if self.current else None, source="stream",
                                        details={"error": str(exc)[:500]})
            self._outage = True
            return
        if self._outage:
            log.warning("registry reachable again")
            self._outage = False
        if ref is None:
            if self.current is None:
                log.info("no %s model yet: storing bars, predictions start when one appears",
                         self.settings.model_alias)
            return
        if self.current is not None and self.current.version == ref.version:
            return
        try:
            model = registry.load(self.settings, ref)
        except PlatformError as exc:
            log.error("not switching to %s version %s: %s", ref.name, ref.version, exc)
            return
        previous = self.current.version if self.current else None
        self.current = LoadedModel(ref.version, model)
        log.warning("scoring with %s version %s (was %s)", ref.name, ref.version, previous)
        database.record_event(self.engine, "reloaded", ref.name, version=ref.version, previous_version=previous,
                                source="stream", details={"found_by": ref.found_by})
