"""The state-key layout: the one place that knows how a state key is made.

Every key is a one-byte table prefix followed by fixed-width binary fields (u16/u64 big-endian,
32-byte keys), so keys of one table sort together and no two tables can produce the same key.
What each value is, and its exact stored form, is `p2pnode.chain.records`' (one dataclass per kind).

    A|pub                account: [balance, nonce]
    S|cold|hot           stake of a coldkey on a hotkey
    T|hot                total stake on a hotkey
    L|hot                sorted list of coldkeys staking on a hotkey
    R|cold               sorted list of hotkeys a coldkey stakes on
    H|hot                hotkey record: [owner coldkey, take]
    N|netuid             subnet record (map)
    U|netuid|uid         neuron record (map)
    K|netuid|hot         uid of a hotkey on a subnet
    C|netuid|hot         live weight commits: [[hash, epoch, block], ...]
    E|netuid             the newest epoch receipts: [[epoch, block, inputs hash, outputs hash], ...]
    G|name               global value (params, supply, validator sets, finality, randao mix, ...)
    P|id                 governance proposal
    V|id|cold            a coldkey's vote on a proposal
    Q|cold               stake a coldkey's open votes locked: [amount, until height]
    X|slashed|hot        a slashed hotkey: [height, burned]
    X|ffgtally|epoch     finality vote tallies of a target epoch
    Y|hot                stake unbonding from a hotkey: [[coldkey, amount, release height], ...]
    W|height             hotkeys with unbonding entries due at a height
    Z|hot                height of the hotkey's last fee-free duty
"""

from __future__ import annotations

# Table prefixes, by what the table holds.
ACCOUNT = b"A"
STAKE = b"S"
TOTAL_STAKE = b"T"
STAKERS = b"L"
STAKED_HOTKEYS = b"R"
HOTKEY = b"H"
SUBNET = b"N"
NEURON = b"U"
UID = b"K"
COMMITS = b"C"
EPOCH_RECEIPTS = b"E"
GLOBAL = b"G"
PROPOSAL = b"P"
VOTE = b"V"
VOTE_LOCK = b"Q"
SLASHED = b"Xslashed"
FFG_TALLY = b"Xffgtally"
UNBONDING = b"Y"
UNBONDING_DUE = b"W"
FREE_DUTY = b"Z"

TABLES = (
    ACCOUNT, STAKE, TOTAL_STAKE, STAKERS, STAKED_HOTKEYS, HOTKEY, SUBNET, NEURON, UID, COMMITS,
    EPOCH_RECEIPTS, GLOBAL, PROPOSAL, VOTE, VOTE_LOCK, SLASHED, FFG_TALLY, UNBONDING, UNBONDING_DUE,
    FREE_DUTY,
)


def u16b(n: int) -> bytes:
    return n.to_bytes(2, "big")


def u64b(n: int) -> bytes:
    return n.to_bytes(8, "big")


def account(pub: bytes) -> bytes:
    return ACCOUNT + pub


def stake(cold: bytes, hot: bytes) -> bytes:
    return STAKE + cold + hot


def total_stake(hot: bytes) -> bytes:
    return TOTAL_STAKE + hot


def stakers(hot: bytes) -> bytes:
    return STAKERS + hot


def staked_hotkeys(cold: bytes) -> bytes:
    return STAKED_HOTKEYS + cold


def hotkey(hot: bytes) -> bytes:
    return HOTKEY + hot


def subnet(netuid: int) -> bytes:
    return SUBNET + u16b(netuid)


def neuron(netuid: int, uid: int) -> bytes:
    return NEURON + u16b(netuid) + u16b(uid)


def uid(netuid: int, hot: bytes) -> bytes:
    return UID + u16b(netuid) + hot


def commits(netuid: int, hot: bytes) -> bytes:
    return COMMITS + u16b(netuid) + hot


def epoch_receipts(netuid: int) -> bytes:
    return EPOCH_RECEIPTS + u16b(netuid)


def global_value(name: str) -> bytes:
    return GLOBAL + name.encode()


def proposal(proposal_id: int) -> bytes:
    return PROPOSAL + u64b(proposal_id)


def vote(proposal_id: int, cold: bytes) -> bytes:
    return VOTE + u64b(proposal_id) + cold


def vote_lock(cold: bytes) -> bytes:
    return VOTE_LOCK + cold


def slashed(hot: bytes) -> bytes:
    return SLASHED + hot


def ffg_tally(epoch: int) -> bytes:
    return FFG_TALLY + u64b(epoch)


def unbonding(hot: bytes) -> bytes:
    return UNBONDING + hot


def unbonding_due(height: int) -> bytes:
    return UNBONDING_DUE + u64b(height)


def free_duty(hot: bytes) -> bytes:
    return FREE_DUTY + hot


def table_of(key: bytes) -> bytes | None:
    """The table a key belongs to (the longest matching prefix), or None for a key of no table."""
    matches = [t for t in TABLES if key.startswith(t)]
    return max(matches, key=len) if matches else None
