"""Range-sync blocks whose signatures a helper process checks ahead of their import."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pnode.chain.errors import BlockInvalid
from p2pnode.chain.types import Block, Transfer
from p2pnode.services.chain.block_tree import MIN_BLOCKS_FOR_HELPER, BlockTree
from p2pnode.services.chain.signature_helper import SignatureHelper
from p2pnode.testing.factories import build_and_import, make_genesis, open_chain, signed, user_keys
from protocols import codec
from protocols.validation import InvalidSignature, check_block_signatures

USERS = 3
BLOCKS = MIN_BLOCKS_FOR_HELPER  # the shortest batch the helper is given


@pytest.fixture(scope="module")
def source_blocks(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """The encodings of BLOCKS blocks of USERS transfers each."""
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
    chain.expect_blocks(source_blocks)
    for data in source_blocks:
        chain.import_block(codec.decode(Block, data))
    assert helper.verdicts_used - used == BLOCKS  # none verified here
    assert chain.head.hash == codec.decode(Block, source_blocks[-1]).hash
    assert not helper.expecting


def test_a_short_batch_is_verified_here(tmp_path: Path, source_blocks: list[bytes], helper: SignatureHelper) -> None:
    chain = _fresh_chain(tmp_path, helper)
    used = helper.verdicts_used
    chain.expect_blocks(source_blocks[:-1])
    assert not helper.expecting
    for data in source_blocks[:-1]:
        chain.import_block(codec.decode(Block, data))
    assert helper.verdicts_used == used


def test_a_bad_signature_is_refused_with_the_in_process_reason(tmp_path: Path, source_blocks: list[bytes],
                                                               helper: SignatureHelper) -> None:
    batch = [*source_blocks[:2], _tampered(source_blocks[2]), *source_blocks[3:]]
    with pytest.raises(InvalidSignature) as in_process:
        check_block_signatures(codec.decode(Block, batch[2]))
    chain = _fresh_chain(tmp_path, helper)
    chain.expect_blocks(batch)
    used = helper.verdicts_used
    for data in batch[:2]:
        chain.import_block(codec.decode(Block, data))
    with pytest.raises(BlockInvalid) as refused:
        chain.import_block(codec.decode(Block, batch[2]))
    assert refused.value.reason == "bad_signature"
    assert refused.value.detail == in_process.value.reason == "bad_signature (tx 1)"
    assert helper.verdicts_used - used == 3
    assert chain.head.height == 2
    # The blocks after it stay queued: a later batch replaces them.
    chain.expect_blocks(source_blocks)
    for data in source_blocks[2:]:
        chain.import_block(codec.decode(Block, data))
    assert chain.head.height == BLOCKS


def test_a_verdict_is_only_used_for_the_exact_bytes_it_was_given(tmp_path: Path, source_blocks: list[bytes],
                                                                 helper: SignatureHelper) -> None:
    chain = _fresh_chain(tmp_path, helper)
    chain.expect_blocks(source_blocks)  # the helper says "ok" for the genuine third block
    for data in source_blocks[:2]:
        chain.import_block(codec.decode(Block, data))
    used = helper.verdicts_used
    forged = codec.decode(Block, _tampered(source_blocks[2]))  # same header, other body
    assert forged.hash == codec.decode(Block, source_blocks[2]).hash
    with pytest.raises(BlockInvalid, match="bad_signature"):
        chain.import_block(forged)
    assert helper.verdicts_used == used  # verified here, not taken from the helper
    assert chain.head.height == 2


def test_blocks_are_verified_here_when_the_helper_dies(tmp_path: Path, source_blocks: list[bytes]) -> None:
    helper = SignatureHelper()
    try:
        assert helper.wait_until_ready(120)
        chain = _fresh_chain(tmp_path, helper)
        chain.expect_blocks(source_blocks)
        chain.import_block(codec.decode(Block, source_blocks[0]))
        helper._process.kill()  # noqa: SLF001
        helper._process.wait(30)  # noqa: SLF001
        for data in source_blocks[1:]:
            chain.import_block(codec.decode(Block, data))
        assert chain.head.height == BLOCKS
        assert not helper.alive
        # A bad block is still refused, by this process.
        chain2 = _fresh_chain(tmp_path, helper, "second")
        chain2.expect_blocks(source_blocks)
        with pytest.raises(BlockInvalid, match="bad_signature"):
            chain2.import_block(codec.decode(Block, _tampered(source_blocks[0])))
    finally:
        helper.close()


def test_a_new_batch_while_verdicts_are_pending_still_uses_the_helper(
    tmp_path: Path, source_blocks: list[bytes], helper: SignatureHelper
) -> None:
    chain = _fresh_chain(tmp_path, helper)
    chain.expect_blocks(source_blocks)  # sent ahead, never imported from this batch
    chain.expect_blocks(source_blocks)
    used = helper.verdicts_used
    for data in source_blocks:
        chain.import_block(codec.decode(Block, data))
    assert helper.verdicts_used - used == BLOCKS
    assert not helper.expecting
