"""One checkpoint, one owner: a second streaming job on the same checkpoint is refused (serving/job.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dse_platform.errors import PlatformError
from dse_platform.serving import job

HOLD = """
import fcntl, sys
handle = open(sys.argv[1], "a")
fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("held", flush=True)
sys.stdin.read()
"""


def test_a_second_owner_is_refused_until_the_first_lets_go(tmp_path):
    checkpoint = tmp_path / "checkpoints" / "stream"
    with job.checkpoint_owner(checkpoint), pytest.raises(PlatformError) as refused, job.checkpoint_owner(checkpoint):
        pass
    assert str(checkpoint) in refused.value.problem and f"pid {os.getpid()}" in refused.value.problem
    assert "DSE_STREAM_CHECKPOINT" in refused.value.fix
    with job.checkpoint_owner(checkpoint):  # released when the first owner ended
        pass


def test_a_lock_held_by_another_process_is_refused(tmp_path):
    checkpoint = tmp_path / "stream"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "stream.lock")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(PlatformError, match="in use by another streaming job"), job.checkpoint_owner(checkpoint):
            pass
    finally:
        proc.communicate("")
    with job.checkpoint_owner(checkpoint):
        pass
