"""The epoch case of epoch spec §11: one subnet's epoch as a JSON document, and its result document.

A case is what `p2pnode epoch simulate` runs and the interchange format for golden vectors. Every
number is an exact integer (rao, u16 proportions, blocks); a float anywhere is refused. A malformed
case raises `EpochCaseError`, which names the key and the problem.

Beyond §11 one key is accepted: an optional `description` string, ignored by the epoch. Unknown
keys are refused. `commit_blocks`, when present, turns the commit-reveal mask on (§3.5 item 5).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from p2pnode.chain.yuma import EpochInput, EpochOutput, InvalidEpochInput, SparseRow, run_epoch
from p2pnode.local_files import LocalFileError, parse_json, read_regular_file

MAX_CASE_BYTES = 256 << 20
U16_MAX = 65535
U64_MAX = (1 << 64) - 1


class EpochCaseError(ValueError):
    """A case document is malformed: `key` names where, `problem` says what."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class _FloatLiteral(str):
    """A JSON number with a fraction or exponent, kept aside so the type check can name its key."""


# key -> (required, EpochInput field); the order is the order of §11's table.
_CASE_KEYS: dict[str, tuple[bool, str]] = {
    "n": (True, "n"),
    "current_block": (True, "current_block"),
    "tempo": (True, "tempo"),
    "activity_cutoff": (True, "activity_cutoff"),
    "last_update": (True, "last_update"),
    "block_at_registration": (True, "block_at_registration"),
    "stake": (True, "stake"),
    "stake_threshold": (False, "stake_threshold"),
    "owner_uid": (False, "owner_uid"),
    "validator_permits": (True, "validator_permit"),
    "max_allowed_validators": (True, "max_allowed_validators"),
    "weights": (True, "weights"),
    "bonds": (True, "bonds"),
    "kappa": (True, "kappa"),
    "bonds_penalty": (True, "bonds_penalty"),
    "bonds_moving_average": (True, "bonds_moving_average"),
    "yuma3": (True, "yuma3_on"),
    "liquid_alpha": (True, "liquid_alpha_on"),
    "alpha_low": (True, "alpha_low"),
    "alpha_high": (True, "alpha_high"),
    "alpha_sigmoid_steepness": (True, "alpha_sigmoid_steepness"),
    "last_mech_step_block": (False, "last_mech_step_block"),
    "commit_blocks": (False, "commit_blocks"),
    "emission": (True, "emission"),
}
_FIELD_TO_KEY = {field: key for key, (_, field) in _CASE_KEYS.items()}
_EXTRA_KEYS = {"description"}

_U64 = (0, U64_MAX)
_U16 = (0, U16_MAX)


def _describe(value: object) -> str:
    """How a JSON value reads in an error message."""
    if isinstance(value, _FloatLiteral):
        return f"a float ({value})"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return "a string"
    return f"{value!r}"


def _int(key: str, value: object, bounds: tuple[int, int]) -> int:
    if type(value) is not int:
        raise EpochCaseError(key, f"must be an integer, got {_describe(value)}")
    lo, hi = bounds
    if not lo <= value <= hi:
        raise EpochCaseError(key, f"must be in [{lo}, {hi}], got {value}")
    return value


def _bool(key: str, value: object) -> bool:
    if type(value) is not bool:
        raise EpochCaseError(key, f"must be true or false, got {_describe(value)}")
    return value


def _list(key: str, value: object, n: int | None = None) -> list[Any]:
    if not isinstance(value, list):
        raise EpochCaseError(key, f"must be a list, got {_describe(value)}")
    if n is not None and len(value) != n:
        raise EpochCaseError(key, f"must have n={n} entries, has {len(value)}")
    return value


def _vector(key: str, value: object, n: int, item: Callable[[str, object], Any]) -> list[Any]:
    return [item(f"{key}[{i}]", v) for i, v in enumerate(_list(key, value, n))]


def _rows(key: str, value: object, n: int) -> list[SparseRow]:
    rows = []
    for i, row in enumerate(_list(key, value, n)):
        uids, values = [], []
        for k, entry in enumerate(_list(f"{key}[{i}]", row)):
            where = f"{key}[{i}][{k}]"
            if not isinstance(entry, list) or len(entry) != 2:
                raise EpochCaseError(where, "must be a [uid, value] pair")
            uids.append(_int(f"{where}[0]", entry[0], _U16))
            values.append(_int(f"{where}[1]", entry[1], _U16))
        if len(set(uids)) != len(uids):
            raise EpochCaseError(f"{key}[{i}]", "has a duplicate destination uid")
        rows.append(SparseRow.from_pairs(list(zip(uids, values, strict=True))))
    return rows


def parse_case(doc: object) -> EpochInput:
    """Validate a decoded case document and build the epoch input."""
    if not isinstance(doc, dict):
        raise EpochCaseError("(case)", f"must be a JSON object, got {_describe(doc)}")
    for key in doc:
        if key not in _CASE_KEYS and key not in _EXTRA_KEYS:
            raise EpochCaseError(key, "unknown key")
    for key, (required, _) in _CASE_KEYS.items():
        if required and key not in doc:
            raise EpochCaseError(key, "missing")
    if "description" in doc and not isinstance(doc["description"], str):
        raise EpochCaseError("description", "must be a string")
    n = _int("n", doc["n"], (0, U16_MAX))
    fields: dict[str, Any] = {
        "n": n,
        "current_block": _int("current_block", doc["current_block"], _U64),
        "tempo": _int("tempo", doc["tempo"], _U64),
        "activity_cutoff": _int("activity_cutoff", doc["activity_cutoff"], _U64),
        "last_update": _vector("last_update", doc["last_update"], n, lambda k, v: _int(k, v, _U64)),
        "block_at_registration": _vector(
            "block_at_registration", doc["block_at_registration"], n, lambda k, v: _int(k, v, _U64)
        ),
        "stake": _vector("stake", doc["stake"], n, lambda k, v: _int(k, v, _U64)),
        "validator_permit": _vector("validator_permits", doc["validator_permits"], n, _bool),
        "max_allowed_validators": _int("max_allowed_validators", doc["max_allowed_validators"], _U16),
        "weights": _rows("weights", doc["weights"], n),
        "bonds": _rows("bonds", doc["bonds"], n),
        "kappa": _int("kappa", doc["kappa"], _U16),
        "bonds_penalty": _int("bonds_penalty", doc["bonds_penalty"], _U16),
        "bonds_moving_average": _int("bonds_moving_average", doc["bonds_moving_average"], (0, 1_000_000)),
        "yuma3_on": _bool("yuma3", doc["yuma3"]),
        "liquid_alpha_on": _bool("liquid_alpha", doc["liquid_alpha"]),
        "alpha_low": _int("alpha_low", doc["alpha_low"], _U16),
        "alpha_high": _int("alpha_high", doc["alpha_high"], _U16),
        "alpha_sigmoid_steepness": _int(
            "alpha_sigmoid_steepness", doc["alpha_sigmoid_steepness"], (-(1 << 15), (1 << 15) - 1)
        ),
        "emission": _int("emission", doc["emission"], _U64),
    }
    if "stake_threshold" in doc:
        fields["stake_threshold"] = _int("stake_threshold", doc["stake_threshold"], _U64)
    if doc.get("owner_uid") is not None:
        fields["owner_uid"] = _int("owner_uid", doc["owner_uid"], (0, max(n - 1, 0)))
        if n == 0:
            raise EpochCaseError("owner_uid", "must be null when n is 0")
    if "last_mech_step_block" in doc:
        fields["last_mech_step_block"] = _int("last_mech_step_block", doc["last_mech_step_block"], _U64)
    if doc.get("commit_blocks") is not None:
        fields["commit_blocks"] = _vector(
            "commit_blocks", doc["commit_blocks"], n, lambda k, v: None if v is None else _int(k, v, _U64)
        )
    try:
        return EpochInput(**fields)
    except InvalidEpochInput as exc:
        field = exc.field.split("[", 1)[0]
        key = _FIELD_TO_KEY.get(field, field) + exc.field[len(field):]
        raise EpochCaseError(key, exc.problem) from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise EpochCaseError(key, "duplicate key")
        doc[key] = value
    return doc


def loads_case(text: str | bytes) -> EpochInput:
    """Decode and validate a case from JSON text."""
    try:
        doc = parse_json(text, object_pairs_hook=_no_duplicates, parse_float=_FloatLiteral)
    except LocalFileError as exc:
        raise EpochCaseError("(case)", str(exc)) from None
    return parse_case(doc)


def load_case(path: str | Path) -> EpochInput:
    """Read, decode and validate a case file (a regular file of at most MAX_CASE_BYTES)."""
    try:
        data = read_regular_file(path, MAX_CASE_BYTES)
    except LocalFileError as exc:
        raise EpochCaseError("(file)", str(exc)) from None
    return loads_case(data)


def case_document(inp: EpochInput, description: str | None = None) -> dict[str, Any]:
    """The §11 case document of an epoch input (the inverse of `parse_case`)."""
    doc: dict[str, Any] = {}
    if description is not None:
        doc["description"] = description
    for key, (_, field) in _CASE_KEYS.items():
        value = getattr(inp, field)
        if field in ("weights", "bonds"):
            value = [[[j, v] for j, v in row] for row in value]
        elif isinstance(value, tuple):
            value = list(value)
        if value is None and key == "commit_blocks":
            continue
        doc[key] = value
    return doc


def result_document(out: EpochOutput) -> dict[str, Any]:
    """The §11 result document of an epoch output."""
    return {
        "active": list(out.active),
        "stake_weight": list(out.stake_weight),
        "consensus": list(out.consensus),
        "incentive": list(out.incentive),
        "dividends": list(out.dividends),
        "validator_trust": list(out.validator_trust),
        "emission": list(out.emission),
        "server_emission": list(out.server_emission),
        "validator_emission": list(out.validator_emission),
        "validator_permits": list(out.validator_permit),
        "bonds": [[[j, v] for j, v in row] for row in out.bonds],
    }


def render_document(doc: Mapping[str, Any]) -> str:
    """Deterministic JSON text: one top-level key per line, values compact, key order kept."""
    lines = [f"  {json.dumps(key)}: {json.dumps(value, separators=(',', ':'))}" for key, value in doc.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def simulate(inp: EpochInput) -> dict[str, Any]:
    """Run the chain's epoch function on a case input and return the result document."""
    return result_document(run_epoch(inp))
