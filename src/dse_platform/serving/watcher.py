"""Follows a registry alias from a background thread, so the job scores with what it names.

The job runs one watcher per role: ``production`` follows DSE_MODEL_ALIAS (or the legacy stage),
``challenger`` follows DSE_CHALLENGER_ALIAS and is scored in shadow. The platform runs unattended:
no error may end a thread. A failed poll (registry lookup, download, load) keeps the last good
model, is recorded once per outage as ``registry_unreachable`` and backs off exponentially; a
success resets the pace. Every loaded version is copied to the local model cache under its alias,
so a job started while the registry is down still scores (``cached_model_loaded``). Each event
names its role in ``details``.

An unset alias is no fault: production keeps what it serves (serving never stops without a
replacement) and waits; the challenger stops shadow scoring (``unloaded``, once) until the alias
is set again.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tenacity import RetryCallState, wait_exponential

from dse_platform.config import Settings
from dse_platform.contracts.tables import PRODUCTION, ROLES
from dse_platform.errors import PlatformError
from dse_platform.model import features
from dse_platform.serving import database

if TYPE_CHECKING:
    from dse_platform.model.registry import ModelRef

log = logging.getLogger("dse.stream")

#: the longest pause between polls while the registry stays unreachable
MAX_BACKOFF_S = 60.0

Lookup = Callable[[], "ModelRef | None"]
Fetch = Callable[["ModelRef", Path], Path]


@dataclass
class LoadedModel:
    version: str
    model: Any


class ModelWatcher:
    """Follows one role's registry alias from a background thread; scoring reads `current` without waiting.

    ``lookup`` answers which version the alias names and ``fetch`` downloads one under a folder;
    both default to the configured MLflow registry (tests pass fakes).
    """

    def __init__(self, settings: Settings, engine, lookup: Lookup | None = None, fetch: Fetch | None = None,
                 max_backoff_s: float = MAX_BACKOFF_S, role: str = PRODUCTION) -> None:
        if role not in ROLES:
            raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
        self.settings, self.engine, self.role = settings, engine, role
        self.alias = settings.model_alias if role == PRODUCTION else settings.challenger_alias
        self._lookup = lookup or self._registry_lookup
        self._fetch = fetch or self._registry_fetch
        self.current: LoadedModel | None = None
        self.failures = 0
        self._outage_recorded = False
        self._waiting_logged = False
        self._rejected: ModelRef | None = None
        self._backoff = wait_exponential(multiplier=settings.stream_model_poll_s,
                                         max=max(max_backoff_s, settings.stream_model_poll_s))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"model-watcher-{role}", daemon=True)

    def start(self) -> ModelWatcher:
        self.poll()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    @property
    def alive(self) -> bool:
        """Whether the polling thread runs (it only ends on ``stop``)."""
        return self._thread.is_alive()

    @property
    def delay(self) -> float:
        """Seconds until the next poll: the poll interval, growing exponentially while polls fail."""
        if not self.failures:
            return self.settings.stream_model_poll_s
        state = RetryCallState(None, None, (), {})
        state.attempt_number = self.failures
        return self._backoff(state)

    def _run(self) -> None:
        while not self._stop.wait(self.delay):
            self.poll()

    def poll(self) -> None:
        """One look at the alias; never raises, so the thread outlives any registry or database fault."""
        try:
            self._follow()
        except Exception as exc:  # any lookup/download/load fault (HTTP, MLflow, OS, DB): keep serving
            self._failed(exc)
        else:
            if self.failures:
                log.info("%s: registry reachable again after %d failed polls", self.role, self.failures)
            self.failures, self._outage_recorded = 0, False

    def _follow(self) -> None:
        ref = self._lookup()
        if ref is None:
            self._unset()
            return
        self._waiting_logged = False
        if (self.current is not None and self.current.version == ref.version) or ref == self._rejected:
            return
        from dse_platform.model import registry

        with tempfile.TemporaryDirectory(prefix="dse-model-") as tmp:
            try:
                path = self._fetch(ref, Path(tmp))
                model = registry.load_local(path, ref)
            except PlatformError as exc:  # the version is unfit to serve: refuse it until the alias moves
                self._rejected = ref
                log.error("%s: not switching to %s version %s: %s", self.role, ref.name, ref.version, exc)
                self._record("rejected", ref.name, version=ref.version, details={"error": str(exc)[:500]})
                return
            cache_error = self._save_to_cache(ref, path)
        previous = self.current.version if self.current else None
        self.current = LoadedModel(ref.version, model)
        log.info("%s: scoring with %s version %s (was %s)", self.role, ref.name, ref.version, previous)
        self._record("reloaded", ref.name, version=ref.version, previous_version=previous,
                     details={"found_by": ref.found_by, **({"cache_error": cache_error} if cache_error else {})})

    def _unset(self) -> None:
        """The alias names no version: production keeps what it serves, the challenger stops. Said once."""
        if self._waiting_logged:
            return
        self._waiting_logged = True
        if self.current is None:
            log.info("%s: no %s model yet: %s", self.role, self.alias,
                     "storing bars, predictions start when one appears" if self.role == PRODUCTION
                     else "no shadow scoring until the alias is set")
        elif self.role == PRODUCTION:
            log.warning("%s: alias %s names no version: keeping version %s", self.role, self.alias,
                        self.current.version)
        else:
            previous, self.current = self.current.version, None
            log.info("%s: alias %s removed: shadow scoring of version %s stops", self.role, self.alias, previous)
            self._record("unloaded", self.settings.model_name, previous_version=previous, details={})

    def _failed(self, exc: Exception) -> None:
        """Log and record the first failure of an outage, fall back to the cache when nothing serves yet."""
        self.failures += 1
        held = self.current.version if self.current else None
        if self.failures == 1:
            log.warning("%s: registry unreachable (%s: %s); keeping model version %s", self.role,
                        type(exc).__name__, exc, held or "none")
        if not self._outage_recorded:
            self._outage_recorded = self._record("registry_unreachable", self.settings.model_name, version=held,
                                                 details={"error": f"{type(exc).__name__}: {exc}"[:500]})
        if self.failures == 1 and held is None:
            self._load_cached()
        log.info("%s: registry poll failed (%s: %s); next in %.0f s (failed polls: %d)", self.role,
                 type(exc).__name__, exc, self.delay, self.failures)

    def _load_cached(self) -> None:
        """Score with the version this alias loaded last of this feature version, checked like a registry one."""
        from dse_platform.model import cache

        try:
            entry = cache.newest_compatible(self.settings, self.settings.model_name, self.alias)
            if entry is None:
                log.log(logging.WARNING if self.role == PRODUCTION else logging.INFO,
                        "%s: no cached %s model of alias %s and feature version %s to fall back on", self.role,
                        self.settings.model_name, self.alias, features.FEATURE_VERSION)
                return
            model = cache.load(entry)
        except Exception:  # a damaged cache must not stop the watcher: the registry may still come back
            log.exception("%s: could not load the cached %s model", self.role, self.settings.model_name)
            return
        self.current = LoadedModel(entry.version, model)
        loaded_at = entry.aliases[self.alias].isoformat()
        log.warning("%s: registry unreachable: scoring with cached %s version %s (loaded %s)", self.role, entry.name,
                    entry.version, loaded_at)
        self._record("cached_model_loaded", entry.name, version=entry.version,
                     details={"loaded_at": loaded_at, "path": str(entry.path)})

    def _save_to_cache(self, ref: ModelRef, path: Path) -> str | None:
        """Copy the loaded version to the cache; a failure is logged and returned (serving goes on without it)."""
        from dse_platform.model import cache

        try:
            cache.save(self.settings, ref, path, self.alias)
        except Exception as exc:
            log.exception("%s: could not cache %s version %s", self.role, ref.name, ref.version)
            return f"{type(exc).__name__}: {exc}"[:500]
        return None

    def _record(self, event: str, model_name: str, details: dict[str, Any], **fields: Any) -> bool:
        """Append a model event naming this role and alias; a serving-database fault is logged, never raised.

        Returns whether it was written.
        """
        try:
            database.record_event(self.engine, event, model_name, source="stream",
                                  details={"role": self.role, "alias": self.alias, **details}, **fields)
        except Exception:
            log.exception("%s: could not record model event %s for %s", self.role, event, model_name)
            return False
        return True

    def _registry_lookup(self) -> ModelRef | None:
        from dse_platform.model import registry

        find = registry.production_ref if self.role == PRODUCTION else registry.challenger_ref
        return find(self.settings, registry.connect(self.settings))

    def _registry_fetch(self, ref: ModelRef, dst: Path) -> Path:
        from dse_platform.model import registry

        return registry.download(self.settings, ref, dst)
