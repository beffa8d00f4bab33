"""A local copy of the last good models, so serving survives a registry outage and a cold start during one.

Each loaded version's MLflow model folder is copied to ``<DSE_HOME>/model-cache/<name>/<version>/``
with ``dse-cache.json`` (name, version, alias, feature_version, run_id, loaded_at) beside its
``MLmodel``. A copy is written to a hidden temporary folder and renamed into place, so a reader
never sees half a model; only the ``KEEP`` most recently loaded versions stay. A cached model goes
through the same checks as one from the registry (feature version, signature) before it serves.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sklearn.pipeline import Pipeline

from dse_platform.config import Settings
from dse_platform.model import features, registry
from dse_platform.model.registry import ModelRef

log = logging.getLogger(__name__)

#: versions kept per model name: the serving one and the one before it
KEEP = 2
META = "dse-cache.json"


@dataclass(frozen=True)
class CachedModel:
    """One cached version: its MLflow model folder and what the registry said about it when it was loaded."""

    path: Path
    name: str
    version: str
    alias: str
    feature_version: str | None
    run_id: str
    loaded_at: dt.datetime

    @property
    def ref(self) -> ModelRef:
        return ModelRef(self.name, self.version, self.run_id, self.feature_version, "cache")


def model_dir(settings: Settings, name: str) -> Path:
    return settings.home / "model-cache" / name


def save(settings: Settings, ref: ModelRef, source: Path, alias: str) -> CachedModel:
    """Copy a just-loaded version's model folder into the cache (atomically) and prune older versions."""
    folder = model_dir(settings, ref.name)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / ref.version
    meta = {"name": ref.name, "version": ref.version, "alias": alias, "feature_version": ref.feature_version,
            "run_id": ref.run_id, "loaded_at": dt.datetime.now(dt.UTC).isoformat()}
    if target.is_dir():
        # a registered version never changes: only the time it was last loaded moves
        _write_meta(target, meta)
    else:
        staging = Path(tempfile.mkdtemp(prefix=f".{ref.version}-", dir=folder))
        try:
            shutil.copytree(source, staging, dirs_exist_ok=True)
            _write_meta(staging, meta)
            try:
                staging.rename(target)
            except OSError:
                if not target.is_dir():
                    raise
                _write_meta(target, meta)  # another process cached the same version first
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    prune(settings, ref.name)
    return _entry(target)


def entries(settings: Settings, name: str) -> list[CachedModel]:
    """The readable cached versions of a model, most recently loaded first (unreadable ones are logged)."""
    folder = model_dir(settings, name)
    found = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if path.name.startswith(".") or not path.is_dir():
            continue
        try:
            found.append(_entry(path))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable model cache entry %s: %s", path, exc)
    return sorted(found, key=lambda e: (e.loaded_at, e.version), reverse=True)


def newest_compatible(settings: Settings, name: str) -> CachedModel | None:
    """The most recently loaded cached version computed on this code's feature version, if any."""
    return next((e for e in entries(settings, name) if e.feature_version == features.FEATURE_VERSION), None)


def load(entry: CachedModel) -> Pipeline:
    """The cached pipeline, checked like a registry version; reads only the local folder."""
    return registry.load_local(entry.path, entry.ref)


def prune(settings: Settings, name: str) -> None:
    """Remove every version folder but the ``KEEP`` most recently loaded readable ones."""
    keep = {e.path.name for e in entries(settings, name)[:KEEP]}
    for path in model_dir(settings, name).iterdir():
        if path.is_dir() and not path.name.startswith(".") and path.name not in keep:
            log.info("model cache: removing %s", path)
            with contextlib.suppress(FileNotFoundError):  # another process pruned it first
                shutil.rmtree(path)


def _entry(path: Path) -> CachedModel:
    meta = json.loads((path / META).read_text())
    return CachedModel(path=path, name=str(meta["name"]), version=str(meta["version"]), alias=str(meta["alias"]),
                       feature_version=meta["feature_version"], run_id=str(meta["run_id"]),
                       loaded_at=dt.datetime.fromisoformat(meta["loaded_at"]))


def _write_meta(folder: Path, meta: dict) -> None:
    """Write the JSON through a temporary file and a rename: a reader sees the old or the new, never half."""
    fd, tmp = tempfile.mkstemp(prefix=f".{META}.", dir=folder)
    with os.fdopen(fd, "w") as out:
        json.dump(meta, out, indent=2, sort_keys=True)
    os.replace(tmp, folder / META)

