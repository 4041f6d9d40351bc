"""The layering rule of DEVELOPERS.md, checked on every module's imports (AST walk)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STDLIB = set(sys.stdlib_module_names)

# layer -> (allowed internal prefixes, allowed third-party top-level modules, forbidden stdlib modules).
# A module belongs to the most specific layer whose folder holds it. An internal prefix ending in "."
# allows its submodules only through that exact package (``p2pnode.services.market`` but not
# ``p2pnode.services.market.query``): the wings of services/ use each other's public surface only.
FORBIDDEN_IN_CHAIN = {"time", "random", "socket", "sqlite3", "secrets", "threading", "asyncio", "os", "subprocess"}
SHARED_SERVICES = ("p2pnode.services.clock", "p2pnode.services.errors", "p2pnode.services.ratelimit",
                   "p2pnode.services.metrics")
RULES: dict[str, tuple[tuple[str, ...], set[str], set[str]]] = {
    "p2pnode/chain": (("p2pnode.chain",), set(), FORBIDDEN_IN_CHAIN),
    "protocols": (("p2pnode.chain", "protocols"), {"trio", "nacl"}, set()),
    "models": (("models",), {"torch", "numpy"}, set()),
    "p2pnode/store": (("p2pnode.chain", "protocols", "p2pnode.store"), set(), set()),
    # net may use the stdlib-only limiter shared by the whole tree (nothing else above it).
    "p2pnode/net": (("p2pnode.chain", "protocols", "p2pnode.net", "p2pnode.services.ratelimit"),
                    {"libp2p", "trio", "multiaddr", "nacl", "psutil"}, set()),
    "p2pnode/services": (("p2pnode.chain", *SHARED_SERVICES), {"trio", "prometheus_client"}, set()),
    "p2pnode/services/chain": (
        ("p2pnode.chain", "protocols", "p2pnode.store", "p2pnode.net", "p2pnode.services.chain", *SHARED_SERVICES),
        {"trio", "prometheus_client"},
        set(),
    ),
    "p2pnode/services/market": (
        ("p2pnode.chain", "protocols", "models", "p2pnode.net", "p2pnode.services.market", *SHARED_SERVICES),
        {"trio", "torch", "numpy", "prometheus_client"},
        set(),
    ),
    "p2pnode/services/api": (
        ("p2pnode.chain", "protocols", "p2pnode.store", "p2pnode.net", "p2pnode.services.chain",
         "p2pnode.services.market.", "p2pnode.services.api", *SHARED_SERVICES),
        {"trio", "prometheus_client", "hypercorn", "starlette"},
        set(),
    ),
}


def layer_of(path: Path, root: Path) -> str | None:
    rel = path.relative_to(root).as_posix()
    matches = [layer for layer in RULES if rel.startswith(layer + "/")]
    return max(matches, key=len) if matches else None


def allowed(name: str, prefixes: tuple[str, ...]) -> bool:
    for prefix in prefixes:
        if prefix.endswith("."):
            if name == prefix[:-1]:
                return True
        elif name == prefix or name.startswith(prefix + "."):
            return True
    return False


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
        if layer_of(path, ROOT) != layer:
            continue
        for lineno, name in imports_of(path):
            top = name.split(".")[0]
            where = f"{path.relative_to(ROOT)}:{lineno} imports {name}"
            if top in ("p2pnode", "protocols", "models"):
                if not allowed(name, internal_ok):
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


@pytest.mark.parametrize(("library", "owner"), [("libp2p", "p2pnode/net"), ("sqlite3", "p2pnode/store")])
def test_one_wing_owns_each_library(library: str, owner: str) -> None:
    offenders = []
    for top in ("p2pnode", "protocols", "models"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(owner + "/"):
                continue
            offenders += [f"{rel}:{n}" for n, name in imports_of(path) if name.split(".")[0] == library]
    assert offenders == []


def test_the_checker_keeps_wings_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api = tmp_path / "p2pnode" / "services" / "api"
    api.mkdir(parents=True)
    (api / "routes.py").write_text("from p2pnode.services.market import InferenceClient\n"
                                   "from p2pnode.services.market.query import route\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert violations("p2pnode/services/api") == ["p2pnode/services/api/routes.py:2 imports p2pnode.services.market.query"]
