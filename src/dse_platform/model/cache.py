"""A local copy of the last good models, so serving survives a registry outage and a cold start during one.

Each loaded version's MLflow model folder is copied to ``<DSE_HOME>/model-cache/<name>/<version>/``
with ``dse-cache.json`` (name, version, feature_version, run_id, loaded_at, and ``aliases``: when it
was last loaded under each alias) beside its ``MLmodel``. A copy is written to a hidden temporary
folder and renamed into place, so a reader never sees half a model. Each alias (production,
challenger) falls back on the versions it loaded, and the ``KEEP`` it loaded last stay: a busy
challenger never pushes production's copies out. A cached model goes through the same checks as
one from the registry (feature version, signature) before it serves.
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

#: versions kept per alias: the serving one and the one before it
KEEP = 2
META = "dse-cache.json"


@dataclass(frozen=True)
class CachedModel:
    """One cached version: its MLflow model folder and what the registry said about it when it was loaded."""

    path: Path
    name: str
    version: str
    #: when it was last loaded under each alias
    aliases: dict[str, dt.datetime]
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
    now = dt.datetime.now(dt.UTC).isoformat()
    meta = {"name": ref.name, "version": ref.version, "aliases": {alias: now}, "feature_version": ref.feature_version,
            "run_id": ref.run_id, "loaded_at": now}
    if target.is_dir():
        # a registered version never changes: only the times it was last loaded move
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


def for_alias(found: list[CachedModel], alias: str) -> list[CachedModel]:
    """The entries loaded under ``alias``, the one it loaded last first."""
    return sorted((e for e in found if alias in e.aliases), key=lambda e: (e.aliases[alias], e.version), reverse=True)


def newest_compatible(settings: Settings, name: str, alias: str) -> CachedModel | None:
    """The version ``alias`` loaded last among those computed on this code's feature version, if any."""
    return next((e for e in for_alias(entries(settings, name), alias)
                 if e.feature_version == features.FEATURE_VERSION), None)


def load(entry: CachedModel) -> Pipeline:
    """The cached pipeline, checked like a registry version; reads only the local folder."""
    return registry.load_local(entry.path, entry.ref)


def prune(settings: Settings, name: str) -> None:
    """Remove every version folder but the ``KEEP`` readable ones each alias loaded last."""
    found = entries(settings, name)
    keep = {e.path.name for alias in {a for e in found for a in e.aliases} for e in for_alias(found, alias)[:KEEP]}
    for path in model_dir(settings, name).iterdir():
        if path.is_dir() and not path.name.startswith(".") and path.name not in keep:
            log.info("model cache: removing %s", path)
            with contextlib.suppress(FileNotFoundError):  # another process pruned it first
                shutil.rmtree(path)


def _entry(path: Path) -> CachedModel:
    meta = json.loads((path / META).read_text())
    # an entry written before the challenger existed names one alias, loaded at loaded_at
    aliases = meta["aliases"] if "aliases" in meta else {meta["alias"]: meta["loaded_at"]}
    return CachedModel(path=path, name=str(meta["name"]), version=str(meta["version"]),
                       aliases={str(a): dt.datetime.fromisoformat(at) for a, at in aliases.items()},
                       feature_version=meta["feature_version"], run_id=str(meta["run_id"]),
                       loaded_at=dt.datetime.fromisoformat(meta["loaded_at"]))


def _write_meta(folder: Path, meta: dict) -> None:
    """Write the JSON through a temporary file and a rename: a reader sees the old or the new, never half.

    The aliases the folder's metadata already lists are kept (a version may serve and be the challenger).
    """
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):  # none yet, or unreadable: start afresh
        previous = _entry(folder).aliases
        meta = {**meta, "aliases": {**{a: at.isoformat() for a, at in previous.items()}, **meta["aliases"]}}
    fd, tmp = tempfile.mkstemp(prefix=f".{META}.", dir=folder)
    with os.fdopen(fd, "w") as out:
        json.dump(meta, out, indent=2, sort_keys=True)
    os.replace(tmp, folder / META)

