"""The short version of the fuzz campaign (benchmarks/fuzz.py): every decoder and every remote
handler gets a few thousand random and mutated inputs; none may raise anything but its named
refusal, accept a non-canonical encoding, or spend long on one input."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

INPUTS_PER_TARGET = 1_500


def load_fuzz() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "fuzz.py"
    spec = importlib.util.spec_from_file_location("p2pnode_fuzz", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(240)
def test_short_fuzz_campaign_finds_nothing() -> None:
    fuzz = load_fuzz()
    result = fuzz.run_campaign(INPUTS_PER_TARGET, seed=7)
    findings = [(r["name"], r["findings"]) for r in result["targets"] if r["findings"]]
    assert result["unexpected"] == 0 and result["non_canonical"] == 0, findings
    assert len(result["targets"]) >= 20
    assert all(r["inputs"] == INPUTS_PER_TARGET for r in result["targets"])
    worst = max(result["targets"], key=lambda r: r["worst_cpu_ms"])
    assert worst["worst_cpu_ms"] < 250, worst  # CPU time, so a busy machine does not inflate it much
    assert result["rss_after_mib"] - result["rss_before_mib"] < 64, result
