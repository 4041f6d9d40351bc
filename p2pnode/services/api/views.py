"""JSON views of chain state for the API and the CLI (read-only; never part of consensus)."""

from __future__ import annotations

from typing import Any

from p2pnode.chain import governance, transition
from p2pnode.chain.address import encode_address
from p2pnode.chain.records import Proposal
from p2pnode.chain.state import State
from p2pnode.chain.types import Block

U16 = 65535


def _ratio(value: int) -> float:
    return round(value / U16, 6)


def account_view(state: State, pub: bytes) -> dict[str, Any]:
    stakes = [
        {"hotkey": encode_address(hot), "amount": state.stake(pub, hot)} for hot in state.staked_hotkeys(pub)
    ]
    return {
        "address": encode_address(pub),
        "balance": state.balance(pub),
        "nonce": state.nonce(pub),
        "stake": stakes,
        "total_stake": sum(s["amount"] for s in stakes),
        "locked_by_votes": governance.locked_stake(state, pub, state.height),
        "hotkey_owner": encode_address(owner) if (owner := state.hotkey_owner(pub)) else None,
    }


def metagraph_view(state: State, netuid: int) -> list[dict[str, Any]] | None:
    sn = state.subnet(netuid)
    if sn is None:
        return None
    rows = []
    for uid, nr in enumerate(state.neurons(netuid, sn.uid_count)):
        rows.append({
            "uid": uid,
            "hotkey": encode_address(nr.hotkey),
            "stake": state.total_stake(nr.hotkey),
            "validator_permit": nr.validator_permit,
            "consensus": _ratio(nr.consensus),
            "incentive": _ratio(nr.incentive),
            "dividends": _ratio(nr.dividends),
            "emission": nr.emission,
            "model": nr.model,
            "peer_id": nr.peer_id,
            "trust": _ratio(nr.trust),
            "active": nr.active,
            "registered": nr.registered_block,
            "last_update": nr.last_update,
            "raw": {"consensus": nr.consensus, "incentive": nr.incentive, "dividends": nr.dividends,
                    "trust": nr.trust},
        })
    return rows


def subnets_view(state: State) -> list[dict[str, Any]]:
    out = []
    for netuid in state.netuids():
        sn = state.subnet(netuid)
        assert sn is not None
        out.append({
            "netuid": netuid,
            "task": sn.task,
            "owner": encode_address(sn.owner_coldkey) if sn.owner_coldkey else None,
            "owner_hotkey": encode_address(sn.owner_hotkey) if sn.owner_hotkey else None,
            "n": sn.uid_count,
            "pending_emission": sn.pending_emission,
            "last_epoch": sn.last_epoch_block,
            "epoch_index": sn.epoch_index,
            "hyperparameters": sn.hyperparams,
            "registration_burn": sn.registration_burn,  # the price of a registration now
            "registrations_this_interval": sn.registrations_this_interval,
        })
    return out


def proposal_json(prop: Proposal) -> dict[str, Any]:
    out = prop.to_state()  # the stored field names are the API's
    out["proposer"] = encode_address(prop.proposer)
    out["owner"] = encode_address(prop.owner) if len(prop.owner) == 32 else ""
    return out


def proposals_view(state: State) -> list[dict[str, Any]]:
    return [proposal_json(prop) for pid in governance.proposal_ids(state)
            if (prop := governance.proposal(state, pid)) is not None]


def supply_view(state: State) -> dict[str, int]:
    return dict(state.supply().to_state(), pending=state.global_value("pending_total", 0), staked=state.total_staked())


def supported_versions() -> list[int]:
    return sorted(transition.SUPPORTED_PROTOCOL_VERSIONS)


def block_view(block: Block) -> dict[str, Any]:
    h = block.header
    return {
        "height": h.height, "slot": h.slot, "hash": h.hash.hex(), "parent": h.parent.hex(),
        "proposer": encode_address(h.proposer) if any(h.proposer) else None,
        "state_root": h.state_root.hex(), "timestamp_ms": h.timestamp_ms, "version": h.version,
        "txs": [{"id": t.id.hex(), "kind": t.tx.kind, "sender": encode_address(t.tx.sender),
                 "nonce": t.tx.nonce, "fee": t.tx.fee} for t in block.txs],
        "votes": len(block.votes),
    }


def explain_view(state: State, netuid: int, uid: int) -> dict[str, Any] | None:
    """One uid's stored epoch inputs and outputs, or None when the subnet has no such uid."""
    neuron = state.neuron(netuid, uid)
    sn = state.subnet(netuid)
    if neuron is None or sn is None:
        return None
    return {
        "netuid": netuid, "uid": uid, "hotkey": encode_address(neuron.hotkey),
        "stake": state.total_stake(neuron.hotkey),
        "inputs": {"weights": [list(e) for e in neuron.weights], "bonds": [list(e) for e in neuron.bonds],
                   "last_update": neuron.last_update, "registered": neuron.registered_block,
                   "validator_permit_before": neuron.validator_permit},
        "outputs": {"consensus": neuron.consensus, "incentive": neuron.incentive, "dividends": neuron.dividends,
                    "trust": neuron.trust, "emission": neuron.emission, "active": neuron.active},
        "subnet": {"last_epoch": sn.last_epoch_block, "epoch_index": sn.epoch_index,
                   "pending_emission": sn.pending_emission, "hyperparameters": sn.hyperparams},
    }
