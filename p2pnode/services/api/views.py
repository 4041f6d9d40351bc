"""JSON views of chain state for the API and the CLI (read-only; never part of consensus)."""

from __future__ import annotations

from typing import Any

from p2pnode.chain import governance, subnets, transition
from p2pnode.chain.address import encode_address
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
    for uid in range(sn["n"]):
        nr = state.neuron(netuid, uid)
        assert nr is not None
        rows.append({
            "uid": uid,
            "hotkey": encode_address(nr["hot"]),
            "stake": state.total_stake(nr["hot"]),
            "validator_permit": nr["permit"],
            "consensus": _ratio(nr["consensus"]),
            "incentive": _ratio(nr["incentive"]),
            "dividends": _ratio(nr["dividends"]),
            "emission": nr["emission"],
            "model": nr["model"],
            "peer_id": nr["peer_id"],
            "trust": _ratio(nr["trust"]),
            "active": nr["active"],
            "registered": nr["registered"],
            "last_update": nr["last_update"],
            "raw": {"consensus": nr["consensus"], "incentive": nr["incentive"], "dividends": nr["dividends"],
                    "trust": nr["trust"]},
        })
    return rows


def subnets_view(state: State) -> list[dict[str, Any]]:
    out = []
    for netuid in state.netuids():
        sn = state.subnet(netuid)
        assert sn is not None
        out.append({
            "netuid": netuid,
            "task": sn["task"],
            "owner": encode_address(sn["owner_cold"]) if sn["owner_cold"] else None,
            "owner_hotkey": encode_address(sn["owner_hot"]) if sn["owner_hot"] else None,
            "n": sn["n"],
            "pending_emission": sn["pending"],
            "last_epoch": sn["last_epoch"],
            "epoch_index": sn["epoch_index"],
            "hyperparameters": sn["hp"],
            "registration_burn": subnets.current_burn(sn),  # the price of a registration now
            "registrations_this_interval": sn.get("regs_interval", 0),
        })
    return out


def proposal_json(prop: dict[str, Any]) -> dict[str, Any]:
    out = dict(prop)
    out["proposer"] = encode_address(prop["proposer"])
    out["owner"] = encode_address(prop["owner"]) if len(prop["owner"]) == 32 else ""
    return out


def proposals_view(state: State) -> list[dict[str, Any]]:
    return [proposal_json(governance.proposal(state, pid)) for pid in governance.proposal_ids(state)]  # type: ignore[arg-type]


def supply_view(state: State) -> dict[str, int]:
    return dict(state.supply(), pending=state.global_value("pending_total", 0), staked=state.total_staked())


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
        "netuid": netuid, "uid": uid, "hotkey": encode_address(neuron["hot"]),
        "stake": state.total_stake(neuron["hot"]),
        "inputs": {"weights": neuron["weights"], "bonds": neuron["bonds"],
                   "last_update": neuron["last_update"], "registered": neuron["registered"],
                   "validator_permit_before": neuron["permit"]},
        "outputs": {k: neuron[k] for k in ("consensus", "incentive", "dividends", "trust", "emission", "active")},
        "subnet": {"last_epoch": sn["last_epoch"], "epoch_index": sn["epoch_index"],
                   "pending_emission": sn["pending"], "hyperparameters": sn["hp"]},
    }
