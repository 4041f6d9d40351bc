"""Range-sync blocks whose signatures a helper process checks ahead of their import."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pnode.chain.errors import BlockInvalid
from p2pnode.chain.types import Block, Transfer
from p2pnode.services.chain.block_tree import MIN_BLOCKS_TO_START_HELPER, BlockTree
from p2pnode.services.chain.signature_helper import SignatureHelper, pack_checks, unpack_checks
from p2pnode.testing.factories import build_and_import, make_genesis, open_chain, signed, user_keys
from protocols import codec
from protocols.validation import InvalidSignature, block_signature_checks, check_block_signatures

USERS = 3
BLOCKS = MIN_BLOCKS_TO_START_HELPER  # the shortest batch that starts the helper


@pytest.fixture(scope="module")
def source_blocks(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """The encodings of BLOCKS blocks of USERS transfers each (each test decodes its own copies,
    as range sync does)."""
    chain = open_chain(tmp_path_factory.mktemp("source") / "chain.sqlite", make_genesis(4, USERS))
    users = user_keys(USERS)
    for height in range(1, BLOCKS + 1):
        txs = [signed(user, height - 1, Transfer(to=users[0].public_key, amount=1)) for user in users]
        build_and_import(chain, txs=txs)
    out = [codec.encode(chain.store.canonical_block(h)) for h in range(1, BLOCKS + 1)]
    chain.store.close()
    return out


@pytest.fixture(scope="module")
def helper() -> Iterator[SignatureHelper]:
    helper = SignatureHelper()
    assert helper.wait_until_ready(120), "the helper process did not start"
    yield helper
    helper.close()


def _fresh_chain(tmp_path: Path, helper: SignatureHelper | None, name: str = "target") -> BlockTree:
    chain = open_chain(tmp_path / f"{name}.sqlite", make_genesis(4, USERS))
    chain.signature_helper = helper
    return chain


def _decoded(raw: list[bytes]) -> list[Block]:
    return [codec.decode(Block, data) for data in raw]


def _tampered(data: bytes) -> bytes:
    """The block with its second transaction's signature swapped for the first's."""
    block = codec.decode(Block, data)
    txs = list(block.txs)
    txs[1] = dataclasses.replace(txs[1], sig=txs[0].sig)
    return codec.encode(dataclasses.replace(block, txs=tuple(txs)))


def test_a_range_imports_on_the_helpers_verdicts(tmp_path: Path, source_blocks: list[bytes],
                                                 helper: SignatureHelper) -> None:
    chain = _fresh_chain(tmp_path, helper)
    used = helper.verdicts_used
    blocks = _decoded(source_blocks)
    chain.expect_blocks(blocks)
    for block in blocks:
        chain.import_block(block)
    assert helper.verdicts_used - used == BLOCKS  # none verified here
    assert chain.head.hash == blocks[-1].hash
    assert not helper.expecting


def test_a_short_batch_does_not_start_the_helper_but_a_running_one_takes_it(
    tmp_path: Path, source_blocks: list[bytes], helper: SignatureHelper
) -> None:
    idle = SignatureHelper()
    chain = _fresh_chain(tmp_path, idle)
    blocks = _decoded(source_blocks[:-1])
    chain.expect_blocks(blocks)
    for block in blocks:
        chain.import_block(block)
    assert idle.pid is None and idle.verdicts_used == 0  # never started: verified here
    # A helper already running (started by a long batch) checks short batches too.
    chain = _fresh_chain(tmp_path, helper, "second")
    used = helper.verdicts_used
    blocks = _decoded(source_blocks[:3])
    chain.expect_blocks(blocks)
    for block in blocks:
        chain.import_block(block)
    assert helper.verdicts_used - used == 3


def test_a_bad_signature_is_refused_with_the_in_process_reason(tmp_path: Path, source_blocks: list[bytes],
                                                               helper: SignatureHelper) -> None:
    batch = _decoded([*source_blocks[:2], _tampered(source_blocks[2]), *source_blocks[3:]])
    with pytest.raises(InvalidSignature) as in_process:
        check_block_signatures(batch[2])
    chain = _fresh_chain(tmp_path, helper)
    chain.expect_blocks(batch)
    used = helper.verdicts_used
    for block in batch[:2]:
        chain.import_block(block)
    with pytest.raises(BlockInvalid) as refused:
        chain.import_block(batch[2])
    assert refused.value.reason == "bad_signature"
    assert refused.value.detail == in_process.value.reason == "bad_signature (tx 1)"
    assert helper.verdicts_used - used == 3
    assert chain.head.height == 2
    # The blocks after it stay queued and in flight: a later batch replaces them.
    again = _decoded(source_blocks)
    chain.expect_blocks(again)
    for block in again[2:]:
        chain.import_block(block)
    assert chain.head.height == BLOCKS
    assert helper.verdicts_used - used == 3 + BLOCKS - 2


def test_a_verdict_is_only_used_for_the_exact_bytes_it_was_given(tmp_path: Path, source_blocks: list[bytes],
                                                                 helper: SignatureHelper) -> None:
    chain = _fresh_chain(tmp_path, helper)
    blocks = _decoded(source_blocks)
    chain.expect_blocks(blocks)  # the helper says "ok" for the genuine third block
    for block in blocks[:2]:
        chain.import_block(block)
    used = helper.verdicts_used
    forged = codec.decode(Block, _tampered(source_blocks[2]))  # same header, other body
    assert forged.hash == blocks[2].hash
    with pytest.raises(BlockInvalid, match="bad_signature"):
        chain.import_block(forged)
    assert helper.verdicts_used == used  # verified here, not taken from the helper
    # An equal copy is not the object sent either: verified here, and imported.
    chain.import_block(codec.decode(Block, source_blocks[2]))
    assert helper.verdicts_used == used and chain.head.height == 3


def test_blocks_are_verified_here_when_the_helper_dies(tmp_path: Path, source_blocks: list[bytes]) -> None:
    helper = SignatureHelper()
    try:
        assert helper.wait_until_ready(120)
        chain = _fresh_chain(tmp_path, helper)
        blocks = _decoded(source_blocks)
        chain.expect_blocks(blocks)
        chain.import_block(blocks[0])
        helper._process.kill()  # noqa: SLF001
        helper._process.wait(30)  # noqa: SLF001
        for block in blocks[1:]:
            chain.import_block(block)
        assert chain.head.height == BLOCKS
        assert not helper.alive
        # A bad block is still refused, by this process.
        chain2 = _fresh_chain(tmp_path, helper, "second")
        batch = _decoded([_tampered(source_blocks[0]), *source_blocks[1:]])
        chain2.expect_blocks(batch)
        with pytest.raises(BlockInvalid, match="bad_signature"):
            chain2.import_block(batch[0])
    finally:
        helper.close()


def test_a_new_batch_while_verdicts_are_pending_still_uses_the_helper(
    tmp_path: Path, source_blocks: list[bytes], helper: SignatureHelper
) -> None:
    chain = _fresh_chain(tmp_path, helper)
    chain.expect_blocks(_decoded(source_blocks))  # sent ahead, never imported
    blocks = _decoded(source_blocks)
    chain.expect_blocks(blocks)
    used = helper.verdicts_used
    for block in blocks:
        chain.import_block(block)
    assert helper.verdicts_used - used == BLOCKS
    assert not helper.expecting


def test_packed_checks_unpack_to_what_was_packed(source_blocks: list[bytes]) -> None:
    block = codec.decode(Block, source_blocks[0])
    checks = block_signature_checks(block)
    unpacked = unpack_checks(pack_checks(checks))
    assert unpacked == [(pk, message, sig) for pk, message, sig, _ in checks]
    with pytest.raises(ValueError):
        unpack_checks(pack_checks(checks)[:-1])
