"""The layering rule of DESIGN.md §1, checked on every module's imports (AST walk)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STDLIB = set(sys.stdlib_module_names)

# layer -> (allowed internal prefixes, allowed third-party top-level modules, forbidden stdlib modules)
FORBIDDEN_IN_CHAIN = {"time", "random", "socket", "sqlite3", "secrets", "threading", "asyncio", "os", "subprocess"}
RULES: dict[str, tuple[tuple[str, ...], set[str], set[str]]] = {
    "p2pnode/chain": (("p2pnode.chain",), set(), FORBIDDEN_IN_CHAIN),
    "protocols": (("p2pnode.chain", "protocols"), {"trio", "cbor2", "nacl"}, set()),
    "models": (("models",), {"torch", "numpy"}, set()),
    "p2pnode/store": (("p2pnode.chain", "protocols", "p2pnode.store"), set(), set()),
    "p2pnode/net": (("p2pnode.chain", "protocols", "p2pnode.net"), {"libp2p", "trio", "multiaddr", "nacl", "cbor2"}, set()),
    "p2pnode/services": (
        ("p2pnode.chain", "protocols", "models", "p2pnode.store", "p2pnode.net", "p2pnode.services"),
        {"trio", "torch", "numpy"},
        set(),
    ),
}


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise AssertionError(f"{path}:{node.lineno}: relative import (use absolute imports)")
            found.append((node.lineno, node.module or ""))
    return found


def violations(layer: str) -> list[str]:
    internal_ok, third_ok, forbidden = RULES[layer]
    problems = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        for lineno, name in imports_of(path):
            top = name.split(".")[0]
            where = f"{path.relative_to(ROOT)}:{lineno} imports {name}"
            if top in ("p2pnode", "protocols", "models"):
                if not any(name == p or name.startswith(p + ".") for p in internal_ok):
                    problems.append(where)
            elif top == "__future__" or top in STDLIB:
                if top in forbidden:
                    problems.append(where)
            elif top not in third_ok:
                problems.append(where)
    return problems


@pytest.mark.parametrize("layer", sorted(RULES))
def test_layer_imports_only_what_it_may(layer: str) -> None:
    assert violations(layer) == []


def test_chain_core_has_no_float_literals() -> None:
    offenders = []
    for path in sorted((ROOT / "p2pnode/chain").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, float):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_the_checker_catches_a_violation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "p2pnode" / "chain"
    bad.mkdir(parents=True)
    (bad / "leaky.py").write_text("import sqlite3\nfrom p2pnode.store import Store\nimport trio\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert len(violations("p2pnode/chain")) == 3
