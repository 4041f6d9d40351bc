"""`testnet up --param NAME=VALUE`: genesis parameters of a local network, e.g. the throughput
benchmark's larger blocks."""

from __future__ import annotations

import argparse

import pytest

from p2pnode.chain.genesis import build_genesis_state
from p2pnode.chain.state import State
from p2pnode.cli.main import build_parser
from p2pnode.cli.testnet import make_genesis, parse_param
from p2pnode.genesis_file import genesis_from_json


def test_a_param_is_a_known_global_parameter_within_its_bounds() -> None:
    assert parse_param("max_block_txs=2000") == ("max_block_txs", 2000)
    for text, named in (("max_blok_txs=2000", "unknown parameter"), ("max_block_txs=2k", "expected an integer"),
                        ("max_block_txs=4097", "outside"), ("max_block_txs", "expected an integer")):
        with pytest.raises(argparse.ArgumentTypeError, match=named):
            parse_param(text)


def test_up_puts_the_params_in_the_genesis() -> None:
    args = build_parser().parse_args(["testnet", "up", "--param", "max_block_txs=2000", "--param", "min_fee=5"])
    doc = make_genesis(4, market=False, slot_ms=1000, params=dict(args.param))
    reader, acc, _ = build_genesis_state(genesis_from_json(doc)[0])
    state = State(reader, acc)
    assert state.param("max_block_txs") == 2000 and state.param("min_fee") == 5
    assert state.param("epoch_slots") == 4  # the testnet's own choices stay
    with pytest.raises(SystemExit):
        build_parser().parse_args(["testnet", "up", "--param", "max_block_txs=0"])

