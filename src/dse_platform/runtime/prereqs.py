"""Checks for what the platform needs from the machine: Java 17+ and Maven.

Each check raises :class:`PlatformError` naming what is missing and how to
install it, so a missing prerequisite never surfaces as a traceback.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from dse_platform.config import Settings
from dse_platform.errors import PlatformError

MIN_JAVA = 17
JAVA_FIX = "install Java 17 or newer (Debian: apt-get install openjdk-17-jre-headless) or set DSE_JAVA_HOME"


def java_executable(settings: Settings) -> Path:
    """The java binary the services and Spark will use."""
    if settings.java_home is not None:
        candidate = settings.java_home / "bin" / "java"
        if not candidate.exists():
            raise PlatformError(f"DSE_JAVA_HOME={settings.java_home} has no bin/java", JAVA_FIX)
        return candidate
    found = shutil.which("java")
    if found is None:
        raise PlatformError("Java was not found on PATH", JAVA_FIX)
    return Path(found)


def java_major_version(java: Path) -> int:
    """Major version printed by ``java -version`` (``1.8`` counts as 8)."""
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30)
    except OSError as exc:
        raise PlatformError(f"cannot run {java}: {exc}", JAVA_FIX) from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if match is None:
        raise PlatformError(f"cannot read the version printed by {java} -version", JAVA_FIX)
    major, minor = int(match.group(1)), int(match.group(2) or 0)
    return minor if major == 1 else major


def check_java(settings: Settings) -> Path:
    """Return a Java 17+ executable or raise saying which Java was found."""
    java = java_executable(settings)
    major = java_major_version(java)
    if major < MIN_JAVA:
        raise PlatformError(f"Java {MIN_JAVA}+ is required, found Java {major} at {java}", JAVA_FIX)
    return java


def check_maven(settings: Settings) -> str:
    """Return the Maven executable or raise with the install hint."""
    found = shutil.which(settings.maven)
    if found is None:
        raise PlatformError(
            f"Maven ('{settings.maven}') was not found on PATH",
            "install Maven (Debian: apt-get install maven) or set DSE_MAVEN to its path",
        )
    return found
