"""The container engine the compose deployment runs on: Debian's Docker Engine, started here when needed.

No image registry is reachable from these machines, so everything an image build needs comes from
Debian's packages: the engine (``docker.io``, ``docker-compose``), a base image made by
``debootstrap`` and imported under the tag the Dockerfiles name, and the machine's CA bundle copied
into the build context (git-ignored) for HTTPS to PyPI and Maven Central.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dse_platform.errors import PlatformError

#: the tag both Dockerfiles build FROM by default (their BASE_IMAGE argument)
BASE_IMAGE = "debian:bookworm-slim"
#: what debootstrap installs: bookworm, as the Dockerfiles' apt-get expects
SUITE = "bookworm"
#: the machine's CA bundle, and its git-ignored copy in the build context the Dockerfiles look for
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BUILD_CA_BUNDLE = ".build-ca-bundle.crt"


def engine_ready() -> bool:
    """True when a Docker daemon answers on the default socket."""
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@dataclass
class Daemon:
    """A dockerd this process started (None when one was running already): stopped by :meth:`stop`."""

    process: subprocess.Popen | None
    log: Path

    def stop(self) -> None:
        """Stop the daemon if we started it; a daemon found running is left alone."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start_daemon(log: Path, timeout_s: float = 60.0) -> Daemon:
    """Start ``dockerd`` in the background unless one answers already (nothing here starts it at boot)."""
    if engine_ready():
        return Daemon(None, log)
    dockerd = "/usr/sbin/dockerd"
    if not Path(dockerd).exists():
        raise PlatformError("dockerd is not installed (fix: run `make test-deploy`, which installs Debian's "
                            "docker.io, or `apt-get install docker.io docker-compose debootstrap` as root)")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen([dockerd], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PlatformError(f"dockerd exited with status {process.returncode} at start (fix: read {log}; "
                                "it needs root and a kernel with overlayfs or the vfs storage driver)")
        if engine_ready():
            return Daemon(process, log)
        time.sleep(0.5)
    Daemon(process, log).stop()
    raise PlatformError(f"dockerd did not answer within {timeout_s:.0f} s (fix: read {log})")


def image_present(tag: str) -> bool:
    """True when the engine holds an image under ``tag``."""
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def ensure_base_image(echo: Callable[[str], None], tag: str = BASE_IMAGE, work_dir: Path | None = None) -> bool:
    """Make ``tag`` from Debian's packages when absent (no registry to pull it from); True when made now."""
    if image_present(tag):
        return False
    debootstrap = "/usr/sbin/debootstrap"
    echo(f"base image {tag}: debootstrap --variant=minbase {SUITE} (about a minute)")
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="rootfs-") as rootfs:
        made = subprocess.run([debootstrap, "--variant=minbase", SUITE, rootfs], capture_output=True, text=True)
        if made.returncode != 0:
            raise PlatformError(f"debootstrap of {SUITE} failed (exit {made.returncode}): "
                                f"{made.stderr.strip()[-500:]} (fix: check that Debian's mirror is reachable)")
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(["docker", "import", "-", tag], stdin=tar.stdout, capture_output=True, text=True)
        tar.stdout.close()
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise PlatformError(f"importing the {SUITE} root file system as {tag} failed: "
                                f"{imported.stderr.strip()[-500:]} (fix: read the dockerd log)")
    return True


def copy_ca_bundle(project_dir: Path) -> Path | None:
    """Put this machine's CA bundle in the build context (git-ignored), where the Dockerfiles trust it."""
    if not SYSTEM_CA_BUNDLE.exists():
        return None
    target = project_dir / BUILD_CA_BUNDLE
    shutil.copyfile(SYSTEM_CA_BUNDLE, target)
    return target
