"""JVM artifacts from Maven Central: the Kafka broker and Spark's Kafka connector.

Maven resolves them from ``jvm/pom.xml`` into ``var/jars/<set>``. A set is only
trusted once a marker holding the pom's digest is written after a successful
copy, so a half-written folder (an interrupted download) is noticed, wiped and
resolved again instead of starting a broker with missing classes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from dse_platform.config import Settings
from dse_platform.errors import PlatformError
from dse_platform.runtime.prereqs import check_java, check_maven

JAR_SETS = ("kafka", "spark")
MARKER = ".complete"


def pom_path(settings: Settings) -> Path:
    return settings.project_dir / "jvm" / "pom.xml"


def pom_digest(settings: Settings) -> str:
    return hashlib.sha256(pom_path(settings).read_bytes()).hexdigest()


def jar_set_dir(settings: Settings, name: str) -> Path:
    return settings.jars_dir / name


def is_complete(settings: Settings, name: str) -> bool:
    """True when the set was fully copied from the current pom."""
    marker = jar_set_dir(settings, name) / MARKER
    return marker.exists() and marker.read_text().strip() == pom_digest(settings)


def ensure_jar_set(settings: Settings, name: str, echo=print) -> Path:
    """Resolve one jar set with Maven unless a complete copy is already there."""
    if name not in JAR_SETS:
        raise PlatformError(f"unknown jar set '{name}'", f"use one of {', '.join(JAR_SETS)}")
    target = jar_set_dir(settings, name)
    if is_complete(settings, name):
        return target
    if target.exists():
        echo(f"jars: {target} is incomplete or from another pom (no valid {MARKER}); resolving it again")
        shutil.rmtree(target)
    mvn = check_maven(settings)
    java = check_java(settings)
    env = dict(os.environ, JAVA_HOME=str(java.resolve().parents[1]))
    echo(f"jars: resolving the {name} set from Maven Central into {target}")
    cmd = [mvn, "-q", "-B", "-f", str(pom_path(settings)), f"-P{name}",
           f"-Djars.dir={settings.jars_dir}", "dependency:copy-dependencies"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
        raise PlatformError(
            f"Maven could not resolve the {name} jars (exit {proc.returncode}): {tail}",
            "check that Maven Central is reachable and ~/.m2 is writable, then run `dse jars` again",
        )
    if not any(target.glob("*.jar")):
        raise PlatformError(f"Maven finished but {target} holds no jars", "run `dse jars` again")
    (target / MARKER).write_text(pom_digest(settings) + "\n")
    return target


def ensure_jars(settings: Settings, echo=print) -> dict[str, Path]:
    """Every jar set the platform needs."""
    return {name: ensure_jar_set(settings, name, echo) for name in JAR_SETS}


def classpath(settings: Settings, name: str) -> str:
    """Java classpath of a complete jar set; raises if it is missing."""
    if not is_complete(settings, name):
        raise PlatformError(f"the {name} jars are missing under {jar_set_dir(settings, name)}",
                            "run `dse jars` (or `make demo`, which does it)")
    return str(jar_set_dir(settings, name) / "*")


def jar_list(settings: Settings, name: str) -> str:
    """Comma-separated jar paths of a complete set (spark-submit --jars / spark.jars); raises if missing."""
    classpath(settings, name)
    return ",".join(str(p) for p in sorted(jar_set_dir(settings, name).glob("*.jar")))
