"""`dse promote --dry-run` and the nightly deploy's dry run: the gate's answer, nothing moved or recorded."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict

import pytest
from typer.testing import CliRunner

from dse_platform.cli import app
from dse_platform.config import Settings
from dse_platform.model import gate
from dse_platform.orchestration import retrain

DECISION = gate.Decision(True, "7", "6", "roc_auc", 0.6, 0.55, {}, "2025-01-01..2025-03-01", "clearly better",
                         alias_version="6", policy={"metric": "roc_auc", "confidence": 0.95})


@pytest.fixture
def nothing_moves(monkeypatch):
    def refuse(*args, **kwargs):
        pytest.fail("a dry run must not move an alias or record a decision")

    for name in ("apply", "promote", "nominate"):
        monkeypatch.setattr(gate, name, refuse)
    monkeypatch.setattr(retrain, "_recorded", refuse)


def test_cli_dry_run_prints_the_decision_and_its_policy(monkeypatch, nothing_moves) -> None:
    monkeypatch.setattr(gate, "evaluate", lambda *args, **kwargs: DECISION)
    result = CliRunner().invoke(app, ["promote", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "dry run" in result.output and "version 7 would be PROMOTED: clearly better" in result.output
    assert "policy: metric=roc_auc, confidence=0.95" in result.output


def test_nightly_deploy_dry_run_says_what_it_would_do(nothing_moves) -> None:
    trained = {"trained": True, "version": "7", "run_id": "r"}
    out = retrain.deploy(Settings(_env_file=None), dt.date(2025, 8, 20), trained, asdict(DECISION), dry_run=True)
    assert out == {"promoted": False, "reason": "dry run, would promote: clearly better", "dry_run": True}
    held = retrain.deploy(Settings(_env_file=None), dt.date(2025, 8, 20), {"trained": False, "reason": "no new data"},
                          None, dry_run=True)
    assert held["reason"] == "dry run: no new data" and not held["promoted"]
