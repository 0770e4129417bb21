"""Nothing readable on chain: scan every calldata, log and storage write of the e2e run.

The scan makes confidential writes of its own (a token of its own, a mint, a transfer),
so it has something to find wherever it runs. It is marked ``runs_last``: the e2e
conftest schedules it after every other test of the session, whatever the file names or
the order asked for, so it also sees everything the other e2e modules wrote to the
shared devnet (registrations, deployments, commands, replays, outputs).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sealbridge.client.api import Client, Deployment
from sealbridge.core.ids import from_hex
from sealbridge.evm.scan import collect_chain_blobs, find_leaks
from sealbridge.tee.quote import load_sim_platform_key
from tests.e2e.test_confidential_token import MINT, TO_BOB, TO_CAROL

pytestmark = [pytest.mark.e2e, pytest.mark.runs_last]

SCAN_MINT = 2_718_281
SCAN_TO_ALICE = 161_803


def test_nothing_readable_on_chain(client: Client, token: Deployment, devnet_home: Path) -> None:
    own = client.deploy("token", as_user="carol")
    own_id = "0x" + own.contract_id.hex()
    client.call(own_id, "mint", {"to": "carol", "amount": SCAN_MINT}, as_user="carol")
    r = client.call(own_id, "transfer", {"to": "alice", "amount": SCAN_TO_ALICE}, as_user="carol")
    client.wait_applied(own.contract_id, r.block_number)
    assert (
        client.query(own_id, "balance", {"owner": "alice"}, as_user="alice").answer.result
        == SCAN_TO_ALICE
    )
    blobs = collect_chain_blobs(client.chain, 0, client.chain.get_block_number())
    assert {b.kind for b in blobs} == {"calldata", "log", "storage"}
    needles: dict[str, bytes] = {}
    for user in ("alice", "bob", "carol"):
        key = client.get_user(user)
        needles[f"{user} account key"] = key.identity_key
        needles[f"{user} private key"] = key.identity_private_key
    needles["sim platform private key"] = load_sim_platform_key(
        devnet_home / "devnet" / "sim-platform.key"
    )
    amounts = {
        "mint": MINT,
        "to bob": TO_BOB,
        "to carol": TO_CAROL,
        "alice balance": MINT - TO_BOB,
        "bob balance": TO_BOB - TO_CAROL,
        "scan mint": SCAN_MINT,
        "scan transfer": SCAN_TO_ALICE,
        "scan carol balance": SCAN_MINT - SCAN_TO_ALICE,
    }
    for name, value in amounts.items():
        needles[f"{name} (u32, also inside msgpack)"] = value.to_bytes(4, "big")
        needles[f"{name} (decimal text)"] = str(value).encode()
    hits = find_leaks(blobs, needles)
    assert hits == [], hits
    # The scan can fail: public values that must be there are found.
    controls = {
        "gatekeeper id": from_hex(client.state.gatekeeper.node_id),
        "contract id": token.contract_id,
        "the scan's own contract id": own.contract_id,
        "contract public key": token.contract_public_key,
    }
    assert {h.needle for h in find_leaks(blobs, controls)} == set(controls)
    total = sum(len(b.data) for b in blobs)
    print(f"leak scan: {len(blobs)} blobs, {total} bytes, {len(needles)} needles, 0 found")
