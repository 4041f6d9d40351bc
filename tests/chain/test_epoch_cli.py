"""`p2pnode epoch simulate` on the epoch cases of testnet/epoch-cases (epoch spec §11)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from p2pnode.cli import main
from p2pnode.epoch_case import EpochCaseError, case_document, loads_case, render_document, simulate

ROOT = Path(__file__).resolve().parents[2]
CASES = sorted(p for p in (ROOT / "testnet" / "epoch-cases").glob("*.json") if not p.name.endswith(".result.json"))


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["epoch", "simulate", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_there_are_example_cases() -> None:
    assert len(CASES) >= 4


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_json_output_is_the_golden_result(case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, str(case), "--json")
    assert (code, err) == (0, "")
    assert out == case.with_name(case.stem + ".result.json").read_text()


def result_of(name: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code, out, _ = run_cli(capsys, str(ROOT / "testnet" / "epoch-cases" / f"{name}.json"), "--json")
    assert code == 0
    return json.loads(out)


def test_cases_carry_the_spec_values(capsys: pytest.CaptureFixture[str]) -> None:
    fallback = result_of("ten-uids-self-weights-fallback", capsys)
    assert fallback["emission"] == [99_999_999] * 10
    clipped = result_of("original-yuma-minority-clipped", capsys)  # TV2, block 6
    assert clipped["dividends"][:4] == [4776, 10734, 21438, 28585]
    assert clipped["validator_trust"][:4] == [0, 0, 26214, 26214]
    assert clipped["emission"] == [36443733, 81898628, 163565493, 218092144, 0, 0, 0, 500000000]
    liquid = result_of("yuma3-liquid-alpha-kappa-moves-first", capsys)  # TV7, e1
    assert liquid["dividends"][:3] == [65535, 0, 0]
    assert liquid["bonds"][:3] == [[[3, 5951], [4, 6640]], [[3, 24229]], [[3, 24229]]]
    sniped = result_of("commit-reveal-sniped-uid", capsys)
    assert sniped["incentive"][3] == 0 and sniped["incentive"][2] == 65535


def test_table_output_has_a_row_per_uid_and_totals(capsys: pytest.CaptureFixture[str]) -> None:
    case = ROOT / "testnet" / "epoch-cases" / "original-yuma-minority-clipped.json"
    code, out, _ = run_cli(capsys, str(case))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["uid", "stake", "permit", "active", "consensus", "incentive", "dividends", "trust", "emission"]
    rows = {line.split()[0]: line.split() for line in lines if line.split() and line.split()[0].isdigit()}
    assert sorted(rows, key=int) == [str(u) for u in range(8)]
    assert rows["2"][-1] == "163565493" and rows["7"][5] == "65535"
    total = next(line.split() for line in lines if line.startswith("total") or line.strip().startswith("total"))
    assert total[-1] == str(36443733 + 81898628 + 163565493 + 218092144 + 500000000)


def good_case() -> dict[str, Any]:
    return json.loads((ROOT / "testnet" / "epoch-cases" / "original-yuma-minority-clipped.json").read_text())


@pytest.mark.parametrize(
    ("mutate", "key", "problem"),
    [
        (lambda d: d.pop("kappa"), "kappa", "missing"),
        (lambda d: d.update(emission=1.5), "emission", "float"),
        (lambda d: d.update(tempo=True), "tempo", "boolean"),
        (lambda d: d.update(stake=[1, 2]), "stake", "n=8"),
        (lambda d: d.update(stake=[1, 2, 3, 4, 0, 0, 0, -1]), "stake[7]", "[0, "),
        (lambda d: d["weights"][2].append([7, 1]), "weights[2]", "duplicate"),
        (lambda d: d["weights"][0].append([1, 70000]), "weights[0][1][1]", "[0, 65535]"),
        (lambda d: d["bonds"][0].append([1]), "bonds[0][", "pair"),
        (lambda d: d.update(surprise=1), "surprise", "unknown key"),
        (lambda d: d.update(owner_uid=8), "owner_uid", "[0, 7]"),
        (lambda d: d.update(validator_permits=[1] * 8), "validator_permits[0]", "true or false"),
        (lambda d: d.update(stake=[2**62, 2**62, 0, 0, 0, 0, 0, 0]), "stake", "I64F64"),
        (lambda d: d.update(commit_blocks=[None] * 7), "commit_blocks", "n=8"),
    ],
)
def test_malformed_cases_exit_2_naming_the_key(
    mutate: Any, key: str, problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = good_case()
    mutate(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    code, out, err = run_cli(capsys, str(path))
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert f": {key}" in err and problem in err


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"n": 1,', "not valid JSON"),
        ('{"n": 1, "n": 2}', "duplicate key"),
        ("[1, 2]", "JSON object"),
        ('{"n": NaN}', "NaN"),
    ],
)
def test_undecodable_cases_exit_2(text: str, problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    code, _, err = run_cli(capsys, str(path))
    assert code == 2 and problem in err


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, str(tmp_path / "nope.json"))
    assert code == 2 and "cannot read" in err


def test_case_documents_round_trip() -> None:
    for case in CASES:
        doc = json.loads(case.read_text())
        inp = loads_case(case.read_text())
        again = case_document(inp, doc.get("description"))
        assert again == doc
        assert loads_case(render_document(again)) == inp
        assert render_document(simulate(inp)) == case.with_name(case.stem + ".result.json").read_text()


def test_parse_errors_carry_key_and_problem() -> None:
    with pytest.raises(EpochCaseError) as exc:
        loads_case('{"n": 2}')
    assert exc.value.key == "current_block" and exc.value.problem == "missing"


def test_the_console_command_exits_2_on_a_malformed_case(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    doc = good_case()
    doc["kappa"] = "half"
    path.write_text(json.dumps(doc))
    proc = subprocess.run(
        [sys.executable, "-m", "p2pnode.cli", "epoch", "simulate", str(path)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"p2pnode: error: {path}: kappa: must be an integer, got a string"]
