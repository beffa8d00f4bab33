"""No secret is committed: every tracked text file scanned by detect-secrets (Yelp) with its default plugins.

The compose deployment's secrets live in `.env` (git-ignored, written by `dse deploy env`) and the local
platform's under var/ (generated at first start); a password, key or token in a tracked file is a leak.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from detect_secrets import SecretsCollection
from detect_secrets.settings import default_settings

from dse_platform.config import PROJECT_DIR

#: the shipped DSE data (CSV, gzip): numbers only, and the bulk of the repository's bytes
DATA = ("data/",)


def _findings(root: Path, files: list[str]) -> list[str]:
    collection = SecretsCollection(root=str(root))
    with default_settings():
        collection.scan_files(*files)
    return [f"{path}:{secret['line_number']}: {secret['type']}"
            for path, found in collection.json().items() for secret in found]


def test_no_tracked_file_holds_a_secret():
    files = [f for f in subprocess.run(["git", "ls-files"], cwd=PROJECT_DIR, capture_output=True, text=True,
                                       check=True).stdout.splitlines() if not f.startswith(DATA)]
    assert len(files) > 100
    assert _findings(PROJECT_DIR, files) == []


def test_the_scan_finds_a_planted_secret(tmp_path):
    """The scan above could fail: the same call finds a private key and a password in a URL.

    The planted lines are assembled here, so this file itself holds neither.
    """
    password, key_kind = "Xq7rT2v" + "Lp9sWk4nB", "RSA " + "PRIVATE KEY"
    (tmp_path / "leak.env").write_text(f"DSE_DB_URL=postgresql://dse:{password}@db:5432/dse\n"
                                       f"-----BEGIN {key_kind}-----\n")
    found = _findings(tmp_path, ["leak.env"])
    assert any("Private Key" in f for f in found) and any("Basic Auth" in f for f in found), found
