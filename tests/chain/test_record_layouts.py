"""Every record stored as a map names each of its attributes exactly once in its layout."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from p2pnode.chain.records import Neuron, Proposal, Subnet, Supply
from p2pnode.chain.records.accounts import _SUPPLY_LAYOUT
from p2pnode.chain.records.fields import MalformedRecord, MapLayout, check_uint, list_fields
from p2pnode.chain.records.governance import _PROPOSAL_LAYOUT
from p2pnode.chain.records.subnets import _NEURON_LAYOUT, _SUBNET_LAYOUT


@pytest.mark.parametrize(("kind", "layout"), [
    (Subnet, _SUBNET_LAYOUT), (Neuron, _NEURON_LAYOUT), (Proposal, _PROPOSAL_LAYOUT), (Supply, _SUPPLY_LAYOUT),
])
def test_a_layout_names_every_attribute_once(kind: Any, layout: MapLayout) -> None:
    attrs = [attr for attr, _, _ in layout.required + layout.optional]
    stored = [name for _, name, _ in layout.required + layout.optional]
    assert sorted(attrs) == sorted(f.name for f in dataclasses.fields(kind))
    assert len(set(stored)) == len(stored)


def test_an_optional_field_is_none_while_absent_and_left_out_when_none() -> None:
    layout = MapLayout("sample", required=(("a", "x", check_uint),), optional=(("b", "y", check_uint),))
    assert layout.read({"x": 1}) == {"a": 1, "b": None}
    assert layout.read({"x": 1, "y": 2}) == {"a": 1, "b": 2}
    with pytest.raises(MalformedRecord, match="y is not an unsigned integer"):
        layout.read({"x": 1, "y": -2})
    record = dataclasses.make_dataclass("Sample", ["a", "b"])
    assert layout.write(record(1, None)) == {"x": 1}
    assert layout.write(record(1, 0)) == {"x": 1, "y": 0}


def test_list_fields_checks_the_length_and_each_entry_by_name() -> None:
    fields = (("height", check_uint), ("burned", check_uint))
    assert list_fields("slash", [3, 4], fields) == [3, 4]
    with pytest.raises(MalformedRecord, match="entry is not a list of 2"):
        list_fields("slash", [3], fields, "entry")
    with pytest.raises(MalformedRecord, match="burned is not an unsigned integer"):
        list_fields("slash", [3, "4"], fields)
