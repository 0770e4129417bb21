"""The worker runtime core, driven directly (no enclave process, no chain)."""

from __future__ import annotations

from typing import Any

import pytest

from sealbridge.contracts.catalog import get_code_hash, get_source
from sealbridge.core.encoding import decode, encode
from sealbridge.crypto import ecies
from sealbridge.crypto.keyschedule import compute_contract_keys, key_release_aad
from sealbridge.crypto.signing import ed25519_keypair
from sealbridge.runtime import errors
from sealbridge.runtime.envelope import make_query, open_answer, open_result, seal_command
from sealbridge.runtime.messages import (
    DEPLOY_METHOD,
    BlockInput,
    BlockOutput,
    CommandResult,
    InboxCommand,
    InstallContract,
    SignedCommand,
    compute_deployer_commitment,
)
from sealbridge.runtime.worker import WorkerRuntime, unseal_state
from sealbridge.tee.enclave import EnclaveContext
from tests.unit.witnesses import remember

CONTRACT_ID = bytes(range(32))
CONTRACT_KEY = bytes([7]) * 32
KEYS = compute_contract_keys(CONTRACT_ID, CONTRACT_KEY)
ALICE, ALICE_PUB = ed25519_keypair(b"a" * 32)
BOB, BOB_PUB = ed25519_keypair(b"b" * 32)
WORKERS = [b"\x01" * 32, b"\x02" * 32]


def make_enclave() -> EnclaveContext:
    """A fresh in-process enclave context (fresh identity keys), no child process."""
    return remember(
        EnclaveContext(
            program="tests:Worker", measurement=bytes(32), platform_private_key=bytes([9]) * 32
        )
    )


def install_request(worker: WorkerRuntime, **overrides: Any) -> InstallContract:
    keys = worker.enclave.identity
    wrapped = ecies.encrypt_to(
        keys.encryption_key, CONTRACT_KEY, key_release_aad(CONTRACT_ID, keys.identity_key)
    )
    fields: dict[str, Any] = {
        "contract_id": CONTRACT_ID,
        "code_hash": get_code_hash("token"),
        "contract_public_key": KEYS.command_public_key,
        "wrapped_key": wrapped,
        "gatekeeper_key": b"\x00" * 32,
        "deployer_commitment": compute_deployer_commitment(CONTRACT_ID, ALICE_PUB),
        "workers": WORKERS,
    }
    fields.update(overrides)
    return InstallContract(**fields)


def make_worker(seed: bytes) -> WorkerRuntime:
    worker = WorkerRuntime(make_enclave())
    worker.install_contract(install_request(worker))
    return worker


def cmd(sender: bytes, nonce: int, method: str, args: dict[str, object]) -> bytes:
    return seal_command(
        contract_id=CONTRACT_ID,
        contract_public_key=KEYS.command_public_key,
        sender_private_key=sender,
        nonce=nonce,
        method=method,
        args=args,
    )


def deploy_cmd(sender: bytes = ALICE, nonce: int = 1, code: bytes | None = None) -> bytes:
    source = get_source("token") if code is None else code
    return cmd(sender, nonce, DEPLOY_METHOD, {"code": source, "init": {}})


def block(number: int, *ciphertexts: bytes) -> BlockInput:
    return BlockInput(
        number=number,
        block_hash=number.to_bytes(32, "big"),
        commands=[
            InboxCommand(
                contract_id=CONTRACT_ID,
                seq=number * 100 + i,
                tx_index=i,
                log_index=0,
                ciphertext=c,
            )
            for i, c in enumerate(ciphertexts)
        ],
    )


def setup_blocks() -> list[BlockInput]:
    return [
        block(1, deploy_cmd(), cmd(ALICE, 2, "mint", {"to": ALICE_PUB, "amount": 100})),
        block(3, cmd(ALICE, 3, "transfer", {"to": BOB_PUB, "amount": 40})),
    ]


def results(out: BlockOutput, senders: dict[int, tuple[bytes, int]]) -> list[CommandResult]:
    """Open the sealed results of a block's receipts: ``senders`` maps the receipt's index
    to (sender private key, nonce)."""
    opened = []
    for index, (sender, nonce) in senders.items():
        receipt = out.receipts[index]
        assert receipt.status == "applied"
        opened.append(
            open_result(
                sender_private_key=sender,
                contract_id=CONTRACT_ID,
                nonce=nonce,
                sealed_result=receipt.sealed_result,
            )
        )
    return opened


def ask(worker: WorkerRuntime, caller: bytes, method: str, args: dict[str, object]) -> Any:
    """A signed query from ``caller``; the answer is opened and its signer checked."""
    query, reply = make_query(
        contract_id=CONTRACT_ID,
        caller_private_key=caller,
        method=method,
        args=args,
        issued_at=0,
    )
    answer, signed = open_answer(query, reply, worker.answer_query(query, 0))
    assert signed.worker_key == worker.identity_key
    return answer.result


def query_balance(worker: WorkerRuntime, caller: bytes, owner: bytes) -> Any:
    return ask(worker, caller, "balance", {"owner": owner})


def root_of(out: BlockOutput) -> bytes:
    (only,) = out.contracts
    return only.state_root


def test_commands_apply_and_queries_answer_signed() -> None:
    worker = make_worker(b"w" * 32)
    outs = [worker.process_block(b) for b in setup_blocks()]
    deployed, minted = results(outs[0], {0: (ALICE, 1), 1: (ALICE, 2)})
    assert deployed.ok and minted.ok and minted.value == 100
    (transferred,) = results(outs[1], {0: (ALICE, 3)})
    assert transferred.ok and transferred.gas_used > 0
    assert query_balance(worker, ALICE, ALICE_PUB) == 60
    assert query_balance(worker, BOB, BOB_PUB) == 40
    with pytest.raises(errors.QueryRefused, match="not_a_reader"):
        query_balance(worker, BOB, ALICE_PUB)


def test_results_are_sealed_for_the_sender_only() -> None:
    worker = make_worker(b"w" * 32)
    out = worker.process_block(setup_blocks()[0])
    receipt = out.receipts[1]
    assert receipt.sealed_result and b"mint" not in receipt.sealed_result
    with pytest.raises(errors.QueryRefused):
        open_result(
            sender_private_key=BOB,
            contract_id=CONTRACT_ID,
            nonce=2,
            sealed_result=receipt.sealed_result,
        )


def test_two_workers_reach_the_same_state_root() -> None:
    a, b = make_worker(b"1" * 32), make_worker(b"2" * 32)
    roots_a = [root_of(a.process_block(x)) for x in setup_blocks()]
    roots_b = [root_of(b.process_block(x)) for x in setup_blocks()]
    assert roots_a == roots_b
    assert len(set(roots_a)) == 2


def test_only_the_deployer_may_deploy_matching_code() -> None:
    worker = make_worker(b"w" * 32)
    runtime = worker.get_contract(CONTRACT_ID)
    before = runtime.compute_state_root()
    out = worker.process_block(block(1, deploy_cmd(BOB), cmd(ALICE, 1, "mint", {})))
    bob_deploy, alice_mint = results(out, {0: (BOB, 1), 1: (ALICE, 1)})
    assert bob_deploy.error == "not_deployer"
    assert alice_mint.error == "not_deployed"
    other = get_source("token") + b"\n# changed\n"
    out = worker.process_block(block(2, deploy_cmd(ALICE, 2, code=other)))
    (mismatch,) = results(out, {0: (ALICE, 2)})
    assert mismatch.error == "code_hash_mismatch"
    assert runtime.phase.value == "awaiting_code" and runtime.code == b""
    # only nonces moved
    assert runtime.storage.snapshot() == unseal_state(KEYS, out.contracts[0].sealed_state).storage
    assert runtime.compute_state_root() != before  # nonces are part of the root
    out = worker.process_block(block(3, deploy_cmd(ALICE, 3)))
    (ok,) = results(out, {0: (ALICE, 3)})
    assert ok.ok and runtime.phase.value == "running"
    assert ask(worker, BOB, "code", {}) == get_source("token")


def test_confidential_code_is_disclosed_to_the_deployer_only() -> None:
    worker = make_worker(b"w" * 32)
    code = get_source("token")
    deploy = cmd(ALICE, 1, DEPLOY_METHOD, {"code": code, "init": {}, "confidential": True})
    worker.process_block(block(1, deploy))
    assert ask(worker, ALICE, "code", {}) == code
    with pytest.raises(errors.QueryRefused, match="confidential"):
        ask(worker, BOB, "code", {})


@pytest.mark.parametrize("case", ["wrong_key", "replayed", "malformed", "bad_signature", "garbage"])
def test_bad_commands_are_typed_and_change_nothing(case: str) -> None:
    worker = make_worker(b"w" * 32)
    for b in setup_blocks():
        worker.process_block(b)
    runtime = worker.get_contract(CONTRACT_ID)
    before = runtime.compute_state_root()
    if case == "wrong_key":
        _, other_pub = ecies.x25519_keypair(b"x" * 32)
        bad = seal_command(
            contract_id=CONTRACT_ID,
            contract_public_key=other_pub,
            sender_private_key=ALICE,
            nonce=4,
            method="transfer",
            args={"to": BOB_PUB, "amount": 1},
        )
        expected: type[Exception] = errors.WrongKeyError
    elif case == "replayed":
        bad = cmd(ALICE, 3, "transfer", {"to": BOB_PUB, "amount": 40})
        expected = errors.ReplayedCommand
    elif case == "malformed":
        bad = ecies.encrypt_to(
            KEYS.command_public_key, b"\xc1not msgpack", b"sealbridge/command/v1" + CONTRACT_ID
        )
        expected = errors.MalformedCommand
    elif case == "bad_signature":
        good = ecies.decrypt_with(
            KEYS.command_private_key,
            cmd(ALICE, 4, "transfer", {"to": BOB_PUB, "amount": 1}),
            b"sealbridge/command/v1" + CONTRACT_ID,
        )
        signed = decode(good, SignedCommand)
        forged = SignedCommand(body=signed.body, signature=bytes(64))
        bad = ecies.encrypt_to(
            KEYS.command_public_key, encode(forged), b"sealbridge/command/v1" + CONTRACT_ID
        )
        expected = errors.BadCommandSignature
    else:
        bad = b"\x00" * 10
        expected = errors.WrongKeyError
    with pytest.raises(expected):
        runtime.open_command(bad)
    out = worker.process_block(block(9, bad))
    assert out.receipts[0].status == expected.code  # type: ignore[attr-defined]
    assert out.receipts[0].sealed_result == b""
    assert root_of(out) == before
    assert query_balance(worker, ALICE, ALICE_PUB) == 60


def test_stale_block_is_refused_and_sealed_state_round_trips() -> None:
    worker = make_worker(b"w" * 32)
    outs = [worker.process_block(b) for b in setup_blocks()]
    with pytest.raises(errors.StaleBlock):
        worker.process_block(setup_blocks()[0])
    restored = unseal_state(KEYS, outs[-1].contracts[0].sealed_state)
    balances = dict(restored.storage.maps["balances"])
    assert balances[BOB_PUB] == 40
    assert restored.height == 3 and restored.code == get_source("token")


def test_block_out_of_chain_order_is_refused_whole() -> None:
    worker = make_worker(b"w" * 32)
    worker.process_block(setup_blocks()[0])
    runtime = worker.get_contract(CONTRACT_ID)
    before = runtime.compute_state_root()
    good = block(5, cmd(ALICE, 3, "transfer", {"to": BOB_PUB, "amount": 1}))
    swapped = BlockInput(
        number=5,
        block_hash=good.block_hash,
        commands=[
            InboxCommand(contract_id=CONTRACT_ID, seq=1, tx_index=2, log_index=0, ciphertext=b""),
            good.commands[0],
        ],
    )
    with pytest.raises(errors.MalformedCommand):
        worker.process_block(swapped)
    assert runtime.compute_state_root() == before and runtime.height == 1


def test_released_key_for_another_worker_is_refused() -> None:
    worker = WorkerRuntime(make_enclave())
    _, other_enc_pub = ecies.x25519_keypair(b"z" * 32)
    wrapped = ecies.encrypt_to(
        other_enc_pub, CONTRACT_KEY, key_release_aad(CONTRACT_ID, worker.identity_key)
    )
    with pytest.raises(errors.WrongKeyError):
        worker.install_contract(install_request(worker, wrapped_key=wrapped))
    assert worker.contracts == {}


def test_contract_refusal_consumes_the_nonce_only() -> None:
    worker = make_worker(b"w" * 32)
    for b in setup_blocks():
        worker.process_block(b)
    runtime = worker.get_contract(CONTRACT_ID)
    storage = runtime.storage.snapshot()
    out = worker.process_block(block(5, cmd(BOB, 1, "transfer", {"to": ALICE_PUB, "amount": 999})))
    (refused,) = results(out, {0: (BOB, 1)})
    assert refused.error == "insufficient_balance" and not refused.ok
    assert runtime.storage.snapshot() == storage
    assert runtime.nonces[BOB_PUB.hex()] == 1
    # The sender's next command (nonce 2) is accepted: client and runtime stay in step.
    out = worker.process_block(block(6, cmd(BOB, 2, "transfer", {"to": ALICE_PUB, "amount": 1})))
    assert results(out, {0: (BOB, 2)})[0].ok
    assert query_balance(worker, BOB, BOB_PUB) == 39


def test_command_result_is_readable_by_its_sender() -> None:
    worker = make_worker(b"w" * 32)
    for b in setup_blocks():
        worker.process_block(b)
    kept = decode(ask(worker, ALICE, "command_result", {"nonce": 3}), CommandResult)
    assert kept.ok and kept.value == 60
    worker.process_block(block(5, cmd(BOB, 1, "transfer", {"to": ALICE_PUB, "amount": 999})))
    kept = decode(ask(worker, BOB, "command_result", {"nonce": 1}), CommandResult)
    assert kept.error == "insufficient_balance"
    with pytest.raises(errors.QueryRefused):
        ask(worker, BOB, "command_result", {"nonce": 2})  # no such command yet
    with pytest.raises(errors.QueryRefused):
        ask(worker, ALICE, "command_result", {"nonce": 2})  # only the latest result is kept


def test_stale_query_is_refused() -> None:
    worker = make_worker(b"w" * 32)
    for b in setup_blocks():
        worker.process_block(b)
    query, _ = make_query(
        contract_id=CONTRACT_ID,
        caller_private_key=ALICE,
        method="balance",
        args={"owner": ALICE_PUB},
        issued_at=1_000,
    )
    worker.answer_query(query, 1_000 + 300)
    with pytest.raises(errors.QueryRefused):
        worker.answer_query(query, 1_000 + 301)
    with pytest.raises(errors.QueryRefused):
        worker.answer_query(query, 1_000 - 301)


def test_tampered_sealed_state_is_refused_at_install() -> None:
    from sealbridge.core.errors import DecryptionError

    worker = make_worker(b"w" * 32)
    outs = [worker.process_block(b) for b in setup_blocks()]
    sealed = bytearray(outs[-1].contracts[0].sealed_state)
    sealed[-1] ^= 1
    fresh = WorkerRuntime(make_enclave())
    with pytest.raises(DecryptionError):
        fresh.install_contract(install_request(fresh, sealed_state=bytes(sealed)))
    assert fresh.contracts == {}
    # The untampered state installs and resumes at the same root and height, code included.
    status = fresh.install_contract(
        install_request(fresh, sealed_state=outs[-1].contracts[0].sealed_state)
    )
    assert status.state_root == root_of(outs[-1]) and status.height == 3
    assert status.phase == "running"
    assert query_balance(fresh, BOB, BOB_PUB) == 40


def test_queries_see_the_newest_delivered_block() -> None:
    """An empty block moves the runtime's clock: the contract's state (and root) stay as
    of its own height, but queries evaluate at the newest block."""
    worker = make_worker(b"w" * 32)
    outs = [worker.process_block(b) for b in setup_blocks()]
    out = worker.process_block(BlockInput(number=9, block_hash=b"\x09" * 32))
    assert out.contracts == [] and out.receipts == []
    query, reply = make_query(
        contract_id=CONTRACT_ID,
        caller_private_key=ALICE,
        method="balance",
        args={"owner": ALICE_PUB},
        issued_at=0,
    )
    answer, _ = open_answer(query, reply, worker.answer_query(query, 0))
    assert answer.block_height == 9 and answer.state_root == root_of(outs[-1])
    assert worker.get_contract(CONTRACT_ID).height == 3


@pytest.mark.parametrize(
    "code",
    [
        b"from sealbridge.contracts.sdk import Contract, command\n"
        b"class C(Contract):\n    @command\n    def f(self, *rest):\n        pass\n",
        b"X = " + b"+".join([b"1"] * 3000) + b"\n",
        b"X = " + b"(" * 500 + b"1" + b")" * 500 + b"\n",
    ],
    ids=["star-args", "long-expression", "deep-nesting"],
)
def test_code_that_breaks_the_loader_is_refused_not_fatal(code: bytes) -> None:
    """Found by the docs work: such code stopped the whole block (and the worker)."""
    worker = WorkerRuntime(make_enclave())
    from sealbridge.contracts.executor import compute_code_hash

    worker.install_contract(install_request(worker, code_hash=compute_code_hash(code)))
    out = worker.process_block(block(1, deploy_cmd(code=code)))
    (refused,) = results(out, {0: (ALICE, 1)})
    assert refused.error == "code_rejected"
    assert worker.get_contract(CONTRACT_ID).phase.value == "awaiting_code"


def test_salted_deployer_commitment() -> None:
    worker = WorkerRuntime(make_enclave())
    salt = b"s" * 16
    commitment = compute_deployer_commitment(CONTRACT_ID, ALICE_PUB, salt)
    worker.install_contract(install_request(worker, deployer_commitment=commitment))
    code = get_source("token")
    unsalted = cmd(ALICE, 1, DEPLOY_METHOD, {"code": code})
    salted = cmd(ALICE, 2, DEPLOY_METHOD, {"code": code, "salt": salt})
    out = worker.process_block(block(1, unsalted, salted))
    first, second = results(out, {0: (ALICE, 1), 1: (ALICE, 2)})
    assert first.error == "not_deployer" and second.ok


def test_a_command_over_the_block_budget_is_refused_alone_and_counted_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The block's gas budget runs out at the third command: it and the fourth are refused
    as ``block_full`` with their changes and nonces undone, the block goes on, and the
    contract's command count names every command of the block exactly once."""
    from sealbridge.runtime import worker as worker_module

    def fourth_block() -> BlockInput:
        return block(
            4,
            cmd(ALICE, 4, "transfer", {"to": BOB_PUB, "amount": 1}),
            cmd(ALICE, 5, "transfer", {"to": BOB_PUB, "amount": 1}),
            cmd(BOB, 1, "transfer", {"to": ALICE_PUB, "amount": 5}),
            cmd(ALICE, 6, "transfer", {"to": BOB_PUB, "amount": 1}),
        )

    twin, worker = make_worker(b"t" * 32), make_worker(b"w" * 32)
    for b in setup_blocks():
        twin.process_block(b)
        worker.process_block(b)
    # gas is deterministic: the twin, without a cap, tells what each command costs
    gas = [
        r.gas_used
        for r in results(
            twin.process_block(fourth_block()), {0: (ALICE, 4), 1: (ALICE, 5), 2: (BOB, 1)}
        )
    ]
    runtime = worker.get_contract(CONTRACT_ID)
    applied = runtime.commands_applied
    monkeypatch.setattr(worker_module, "MAX_BLOCK_GAS", gas[0] + gas[1] + gas[2] // 2)
    out = worker.process_block(fourth_block())
    assert [r.status for r in out.receipts] == ["applied", "applied", "block_full", "block_full"]
    assert out.receipts[2].sealed_result == b"" and out.receipts[3].sealed_result == b""
    (output,) = out.contracts
    assert output.command_count == 4  # every command once, the refused ones included
    assert runtime.commands_applied == applied + 2
    assert BOB_PUB.hex() not in runtime.nonces  # bob's nonce 1 can be sent again
    assert runtime.nonces[ALICE_PUB.hex()] == 5
    assert query_balance(worker, BOB, BOB_PUB) == 40 + 2
