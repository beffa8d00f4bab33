"""The compose deployment's `.env`: .env.example with every required secret generated.

A variable that .env.example sets to nothing (``NAME=``) is a secret docker-compose refuses to start
without; each gets a fresh random value here, in the form its consumer needs (Airflow's Fernet key is
url-safe base64 of 32 bytes; the rest come from the local platform's generator, URL-safe, so they
go into database URLs unescaped). Everything
else is copied as it is, so the file keeps .env.example's comments and defaults.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from pathlib import Path

from dse_platform import credentials
from dse_platform.errors import PlatformError

#: ``NAME=value`` or ``# NAME=value``: a setting, set or shown with its default
_SETTING = re.compile(r"^(?P<comment>#\s*)?(?P<name>[A-Za-z_]\w*)=(?P<value>.*)$")


def secret_value(name: str) -> str:
    """A fresh value for the secret ``name``: a Fernet key for Airflow's, the platform's generated secret otherwise."""
    if name.endswith("FERNET_KEY"):
        return base64.urlsafe_b64encode(os.urandom(32)).decode()
    return credentials.generate()


def render(example: str, overrides: Mapping[str, str] | None = None) -> str:
    """.env.example's text with its empty secrets generated and ``overrides`` set (uncommented)."""
    overrides = dict(overrides or {})
    lines = []
    for line in example.splitlines():
        match = _SETTING.match(line)
        if match:
            name = match["name"]
            if name in overrides:
                line = f"{name}={overrides.pop(name)}"
            elif not match["comment"] and match["value"] == "":
                line = f"{name}={secret_value(name)}"
        lines.append(line)
    lines.extend(f"{name}={value}" for name, value in overrides.items())
    return "\n".join(lines) + "\n"


def write(target: Path, example: Path, overrides: Mapping[str, str] | None = None, force: bool = False) -> Path:
    """Write the rendered file with mode 0600; an existing file is kept unless ``force`` (its secrets are live)."""
    if target.exists() and not force:
        raise PlatformError(f"{target} exists: its secrets may already be in the volumes",
                            "keep it, or pass --force to replace it (then `docker-compose down -v` first)")
    text = render(example.read_text(encoding="utf-8"), overrides)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(target, 0o600)
    return target


def read(path: Path) -> dict[str, str]:
    """The settings a rendered file sets (comments and blank lines skipped)."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _SETTING.match(line)
        if match and not match["comment"]:
            values[match["name"]] = match["value"]
    return values
