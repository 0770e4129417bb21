"""The worker runtime core, driven directly (no enclave process, no chain)."""

from __future__ import annotations

import pytest

from sealbridge.contracts.catalog import get_code_hash
from sealbridge.core.encoding import encode
from sealbridge.crypto import ecies
from sealbridge.crypto.keyschedule import compute_contract_keys, key_release_aad
from sealbridge.crypto.signing import ed25519_keypair
from sealbridge.runtime import errors
from sealbridge.runtime.envelope import make_query, open_answer, seal_command
from sealbridge.runtime.messages import BlockInput, InboxCommand, InstallContract, SignedCommand
from sealbridge.runtime.worker import WorkerRuntime, unseal_state
from sealbridge.tee.enclave import EnclaveContext

CONTRACT_ID = bytes(range(32))
CONTRACT_KEY = bytes([7]) * 32
KEYS = compute_contract_keys(CONTRACT_ID, CONTRACT_KEY)
ALICE, ALICE_PUB = ed25519_keypair(b"a" * 32)
BOB, BOB_PUB = ed25519_keypair(b"b" * 32)


def make_enclave() -> EnclaveContext:
    """A fresh in-process enclave context (fresh identity keys), no child process."""
    return EnclaveContext(
        program="tests:Worker", measurement=bytes(32), platform_private_key=bytes([9]) * 32
    )


def make_worker(seed: bytes) -> WorkerRuntime:
    worker = WorkerRuntime(make_enclave())
    keys = worker.enclave.identity
    wrapped = ecies.encrypt_to(
        keys.encryption_key, CONTRACT_KEY, key_release_aad(CONTRACT_ID, keys.identity_key)
    )
    worker.install_contract(
        InstallContract(
            contract_id=CONTRACT_ID,
            code_hash=get_code_hash("token"),
            contract_public_key=KEYS.command_public_key,
            wrapped_key=wrapped,
            gatekeeper_key=b"\x00" * 32,
        )
    )
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


def block(number: int, *ciphertexts: bytes) -> BlockInput:
    return BlockInput(
        contract_id=CONTRACT_ID,
        number=number,
        block_hash=number.to_bytes(32, "big"),
        commands=[
            InboxCommand(seq=number * 100 + i, tx_index=i, log_index=0, ciphertext=c)
            for i, c in enumerate(ciphertexts)
        ],
    )


def setup_blocks() -> list[BlockInput]:
    return [
        block(
            1,
            cmd(ALICE, 1, "initialize", {}),
            cmd(ALICE, 2, "mint", {"to": ALICE_PUB, "amount": 100}),
        ),
        block(3, cmd(ALICE, 3, "transfer", {"to": BOB_PUB, "amount": 40})),
    ]


def ask(worker: WorkerRuntime, caller: bytes, method: str, args: dict[str, object]) -> int | str:
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


def query_balance(worker: WorkerRuntime, caller: bytes, owner: bytes) -> int | str:
    return ask(worker, caller, "balance", {"owner": owner})


def test_commands_apply_and_queries_answer_signed() -> None:
    worker = make_worker(b"w" * 32)
    for b in setup_blocks():
        out = worker.process_block(b)
        assert all(r.ok for r in out.receipts)
    assert query_balance(worker, ALICE, ALICE_PUB) == 60
    assert query_balance(worker, BOB, BOB_PUB) == 40
    with pytest.raises(errors.QueryRefused):
        query_balance(worker, BOB, ALICE_PUB)


def test_two_workers_reach_the_same_state_root() -> None:
    a, b = make_worker(b"1" * 32), make_worker(b"2" * 32)
    roots_a = [a.process_block(x).state_root for x in setup_blocks()]
    roots_b = [b.process_block(x).state_root for x in setup_blocks()]
    assert roots_a == roots_b
    assert len(set(roots_a)) == 2


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
        from sealbridge.core.encoding import decode

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
        runtime.apply_command(bad, 9)
    assert runtime.compute_state_root() == before
    out = worker.process_block(block(9, bad))
    assert out.receipts[0].ok is False and out.receipts[0].error == expected.code
    assert out.state_root == before
    assert query_balance(worker, ALICE, ALICE_PUB) == 60


def test_stale_block_is_refused_and_sealed_state_round_trips() -> None:
    worker = make_worker(b"w" * 32)
    outs = [worker.process_block(b) for b in setup_blocks()]
    with pytest.raises(errors.StaleBlock):
        worker.process_block(setup_blocks()[0])
    restored = unseal_state(KEYS, outs[-1].sealed_state)
    assert restored.token.balances[BOB_PUB.hex()] == 40
    assert restored.height == 3


def test_released_key_for_another_worker_is_refused() -> None:
    worker = WorkerRuntime(make_enclave())
    _, other_enc_pub = ecies.x25519_keypair(b"z" * 32)
    wrapped = ecies.encrypt_to(
        other_enc_pub, CONTRACT_KEY, key_release_aad(CONTRACT_ID, worker.identity_key)
    )
    with pytest.raises(errors.WrongKeyError):
        worker.install_contract(
            InstallContract(
                contract_id=CONTRACT_ID,
                code_hash=get_code_hash("token"),
                contract_public_key=KEYS.command_public_key,
                wrapped_key=wrapped,
                gatekeeper_key=b"\x00" * 32,
            )
        )
    assert worker.contracts == {}


def test_contract_refusal_consumes_the_nonce_only() -> None:
    worker = make_worker(b"w" * 32)
    for b in setup_blocks():
        worker.process_block(b)
    runtime = worker.get_contract(CONTRACT_ID)
    balances = dict(runtime.ledger.balances)
    out = worker.process_block(block(5, cmd(BOB, 1, "transfer", {"to": ALICE_PUB, "amount": 999})))
    assert out.receipts[0].error == "insufficient_balance"
    assert runtime.ledger.balances == balances
    assert runtime.nonces[BOB_PUB.hex()] == 1
    # The sender's next command (nonce 2) is accepted: client and runtime stay in step.
    out = worker.process_block(block(6, cmd(BOB, 2, "transfer", {"to": ALICE_PUB, "amount": 1})))
    assert out.receipts[0].ok
    assert query_balance(worker, BOB, BOB_PUB) == 39


def query_result(worker: WorkerRuntime, caller: bytes, nonce: int) -> int | str:
    return ask(worker, caller, "command_result", {"nonce": nonce})


def test_command_result_is_readable_by_its_sender() -> None:
    worker = make_worker(b"w" * 32)
    for b in setup_blocks():
        worker.process_block(b)
    assert query_result(worker, ALICE, 3) == "ok"
    worker.process_block(block(5, cmd(BOB, 1, "transfer", {"to": ALICE_PUB, "amount": 999})))
    assert query_result(worker, BOB, 1) == "insufficient_balance"
    with pytest.raises(errors.QueryRefused):
        query_result(worker, BOB, 2)  # no such command yet
    with pytest.raises(errors.QueryRefused):
        query_result(worker, ALICE, 2)  # only the latest result is kept


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
    sealed = bytearray(outs[-1].sealed_state)
    sealed[-1] ^= 1
    fresh = WorkerRuntime(make_enclave())
    keys = fresh.enclave.identity
    wrapped = ecies.encrypt_to(
        keys.encryption_key, CONTRACT_KEY, key_release_aad(CONTRACT_ID, keys.identity_key)
    )
    request = InstallContract(
        contract_id=CONTRACT_ID,
        code_hash=get_code_hash("token"),
        contract_public_key=KEYS.command_public_key,
        wrapped_key=wrapped,
        gatekeeper_key=b"\x00" * 32,
        sealed_state=bytes(sealed),
    )
    with pytest.raises(DecryptionError):
        fresh.install_contract(request)
    assert fresh.contracts == {}
    # The untampered state installs and resumes at the same root and height.
    status = fresh.install_contract(
        InstallContract(
            **{
                **{f: getattr(request, f) for f in request.__struct_fields__},
                "sealed_state": outs[-1].sealed_state,
            }
        )
    )
    assert status.state_root == outs[-1].state_root and status.height == 3
