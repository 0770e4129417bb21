"""The gatekeeper's fact reader (``keyservice/chainfacts.py``): its storage layout matches
the compiler's, its header track links or refuses, and a share of a retired committee era
is never used. (Facts read from real proofs against the view functions: the e2e test
``test_gatekeeper_facts.py``.)"""

from __future__ import annotations

import pytest
from vyper.compiler import compile_code

from sealbridge.chain.lightclient import compute_header_hash
from sealbridge.evm.compiler import get_contract_source
from sealbridge.evm.token import BALANCE_OF_SLOT
from sealbridge.keyservice import chainfacts as cf
from tests.unit.chain_builder import ChainBuilder


def layout(name: str) -> dict[str, int]:
    out = compile_code(
        get_contract_source(name), contract_path=f"{name}.vy", output_formats=["layout"]
    )
    storage = out["layout"].get("storage_layout", out["layout"])
    return {k: int(v["slot"]) for k, v in storage.items()}


def test_the_slots_are_the_compilers() -> None:
    assert layout("NodeRegistry")["nodes"] == cf.NODE_REGISTRY_NODES
    registry = layout("ContractRegistry")
    assert registry["contracts"] == cf.CONTRACT_REGISTRY_CONTRACTS
    assert registry["assigned"] == cf.CONTRACT_REGISTRY_ASSIGNED
    assert layout("ExecutionLedger")["checkpoints"] == cf.LEDGER_CHECKPOINTS
    assert layout("DepositToken")["balanceOf"] == BALANCE_OF_SLOT  # chunk balance proofs
    assert layout("GatekeeperCommittee")["current_era"] == cf.COMMITTEE_CURRENT_ERA


def test_headers_advance_only_along_their_links() -> None:
    chain = ChainBuilder()
    blocks = [chain.next() for _ in range(5)]
    start = cf.HeaderTip(number=chain.config().anchor_number, block_hash=chain.config().anchor_hash)
    track = cf.HeaderTrack(start)
    assert track.advance([]) == start
    with pytest.raises(cf.HeadersRefused):  # skips a block
        track.advance([blocks[1].header])
    with pytest.raises(cf.HeadersRefused):  # the second does not follow the first
        track.advance([blocks[0].header, blocks[2].header])
    assert track.tip == start and not track.recent  # nothing moved
    tip = track.advance([b.header for b in blocks])
    assert tip.block_hash == compute_header_hash(blocks[-1].header)
    assert track.get(blocks[2].header.number).state_root == blocks[2].header.state_root
    with pytest.raises(cf.HeadersRefused):  # a block again
        track.advance([blocks[-1].header])
    with pytest.raises(cf.HeadersRefused):
        track.advance([blocks[0].header] * (cf.MAX_HEADERS_PER_CALL + 1))


def test_only_recent_headers_are_kept() -> None:
    chain = ChainBuilder()
    start = cf.HeaderTip(number=chain.config().anchor_number, block_hash=chain.config().anchor_hash)
    track = cf.HeaderTrack(start)
    headers = [chain.next().header for _ in range(cf.RECENT_HEADERS + 10)]
    track.advance(headers[:20])
    track.advance(headers[20:])
    assert len(track.recent) == cf.RECENT_HEADERS
    with pytest.raises(cf.ProofInvalid, match="not among"):
        track.get(headers[5].number)


def test_a_gatekeeper_enclave_restores_once() -> None:
    """Found by attacking the facts: a host called ``restore`` again on a live enclave
    with its older sealed committee state, to bring a retired share back."""
    from sealbridge.crypto.signing import ed25519_keypair
    from sealbridge.keyservice.committee import ChainBinding
    from sealbridge.keyservice.ecalls import Genesis, Restore
    from sealbridge.keyservice.enclave import GatekeeperNotReady, GatekeeperProgram
    from sealbridge.tee.enclave import EnclaveContext
    from sealbridge.tee.policy import devnet_policy

    ctx = EnclaveContext(
        program="tests:Gatekeeper", measurement=bytes(32), platform_private_key=bytes(32)
    )
    program = GatekeeperProgram(ctx)
    chain = ChainBuilder()
    genesis = Genesis(
        policy=devnet_policy(ed25519_keypair()[1], [bytes(32)]),
        chain=ChainBinding(chain_id=31337, committee_address="0x" + "33" * 20),
        management=cf.ManagementBinding(
            node_registry=b"\x01" * 20,
            contract_registry=b"\x02" * 20,
            execution_ledger=b"\x03" * 20,
            committee=b"\x33" * 20,
        ),
        anchor=cf.HeaderTip(number=chain.anchor_number, block_hash=chain.config().anchor_hash),
    )
    sealed = program.genesis(genesis).sealed
    restarted = GatekeeperProgram(ctx)
    restarted.restore(Restore(genesis=sealed))
    with pytest.raises(GatekeeperNotReady, match="once"):
        restarted.restore(Restore(genesis=sealed))
    with pytest.raises(GatekeeperNotReady, match="already"):
        program.genesis(genesis)
