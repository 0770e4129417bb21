"""PriceOracle, DepositToken and InsurancePool against one REAL anvil node: the happy
paths, every refusal with its revert reason and no state change, the typed Python
errors raised before anything is sent, and the gas of each function.

Anvil is required: if the binary is missing, the module fixture raises AnvilNotFound and
every test here fails with that message (nothing is skipped).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sealbridge.chain.errors import ChainConfigError, ChainError, TransactionReverted
from sealbridge.core.ids import keccak
from sealbridge.evm.adapter import ChainAdapter, TxReceipt
from sealbridge.evm.anvil import AnvilNode
from sealbridge.evm.bound import BoundContract
from sealbridge.evm.insurance import (
    InsurancePool,
    InsuranceRevert,
    deploy_insurance_pool,
)
from sealbridge.evm.oracle import (
    OracleRevert,
    PriceOracle,
    StalePrice,
    UnknownAsset,
    compute_asset_key,
    deploy_price_oracle,
)
from sealbridge.evm.token import UNLIMITED, DepositToken, TokenRevert, deploy_deposit_token

CHAIN_ID = 41_021
ETHER = 10**18
UNBONDING = 3600
ZERO = "0x" + "00" * 20

GAS_REPORT: dict[str, int] = {}


def last_receipt(adapter: ChainAdapter) -> TxReceipt:
    """The receipt of the latest block's only transaction (anvil automines one per block)."""
    block = adapter.web3.eth.get_block("latest")
    [tx_hash] = block["transactions"]
    return adapter.wait_for_receipt(bytes(tx_hash))  # type: ignore[arg-type]


class Env:
    def __init__(self, adapter: ChainAdapter) -> None:
        self.adapter = adapter
        keys = adapter.dev_keys
        self.deployer, self.reporter, self.operator = keys[0], keys[1], keys[2]
        self.alice, self.bob, self.carol, self.mallory = keys[3], keys[4], keys[5], keys[6]
        self.oracle = PriceOracle(
            adapter, deploy_price_oracle(adapter, self.deployer, self.addr(self.reporter))
        )
        GAS_REPORT["deploy PriceOracle"] = last_receipt(adapter).gas_used
        self.token = DepositToken(
            adapter, deploy_deposit_token(adapter, self.deployer, "Deposit USD", "dUSD", 6)
        )
        GAS_REPORT["deploy DepositToken"] = last_receipt(adapter).gas_used
        self.pool = InsurancePool(
            adapter,
            deploy_insurance_pool(adapter, self.deployer, self.addr(self.operator), UNBONDING),
        )
        GAS_REPORT["deploy InsurancePool"] = last_receipt(adapter).gas_used

    @staticmethod
    def addr(key: bytes) -> str:
        return ChainAdapter.address_of(key)

    def now(self) -> int:
        return self.adapter.get_block("latest").timestamp


@pytest.fixture(scope="module")
def anvil() -> Iterator[AnvilNode]:
    node = AnvilNode(chain_id=CHAIN_ID)
    node.start()  # AnvilNotFound here fails every test with a clear message
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def env(anvil: AnvilNode) -> Env:
    return Env(anvil.adapter())


@pytest.fixture(scope="module", autouse=True)
def print_gas_report() -> Iterator[None]:
    yield
    if GAS_REPORT:
        print("\nkey-release contracts gas (anvil, prague):")
        for name, gas in GAS_REPORT.items():
            print(f"  {name:<34} {gas:>9,}")


def fresh_address() -> str:
    return ChainAdapter.address_of(os.urandom(32))


def expect_revert(reason: str, action: Callable[..., object], *args: Any) -> None:
    with pytest.raises(TransactionReverted) as info:
        action(*args)
    assert info.value.reason == reason


def raw_transact(
    contract: BoundContract, fn: str, args: list[Any], key: bytes, value: int = 0
) -> TxReceipt:
    """Send a call the typed wrapper would refuse locally (to reach the contract's check)."""
    data = contract.codec.function(fn).encode_call(args)
    return contract.adapter.transact(key, to=contract.address, data=data, value=value)


def expect_local_error(env: Env, key: bytes, action: Callable[..., object], *args: Any) -> None:
    """``action(*args)`` raises ChainConfigError and sends nothing from ``key``."""
    nonce = env.adapter.get_nonce(env.addr(key))
    with pytest.raises(ChainConfigError):
        action(*args)
    assert env.adapter.get_nonce(env.addr(key)) == nonce


# ----------------------------------------------------------------------------- PriceOracle


def test_oracle_prices_and_freshness(env: Env) -> None:
    oracle = env.oracle
    asset = f"ETH@{CHAIN_ID}"
    assert compute_asset_key(asset) == keccak(asset.encode())
    assert oracle.get_owner() == env.addr(env.deployer)
    assert oracle.get_reporter() == env.addr(env.reporter)
    assert oracle.latest(asset) == (0, 0)
    with pytest.raises(UnknownAsset) as unknown:
        oracle.get_price(asset, 3600)
    assert unknown.value.code == "chain_oracle_unknown_asset"
    assert isinstance(unknown.value, ChainError)

    receipt = oracle.set_price(asset, 3_000 * 10**8, env.reporter)
    GAS_REPORT["oracle.set_price (first)"] = receipt.gas_used
    stamp = env.adapter.get_block(receipt.block_number).timestamp
    [(name, event)] = oracle.decode_events(receipt)
    assert name == "PriceSet"
    assert event == {
        "asset": compute_asset_key(asset),
        "price_e8": 3_000 * 10**8,
        "updated_at": stamp,
    }
    assert oracle.latest(asset) == (3_000 * 10**8, stamp)
    assert oracle.get_price(asset, 60) == 3_000 * 10**8
    assert oracle.get_price(asset, 0) == 3_000 * 10**8  # same block time: age 0
    GAS_REPORT["oracle.get_price (estimate)"] = env.adapter.estimate_gas(
        env.addr(env.alice),
        to=oracle.address,
        data=oracle.codec.function("get_price").encode_call([compute_asset_key(asset), 60]),
    )

    env.adapter.increase_time(61)
    with pytest.raises(StalePrice) as stale:
        oracle.get_price(asset, 60)
    assert stale.value.code == "chain_oracle_stale_price"
    assert oracle.get_price(asset, 3600) == 3_000 * 10**8  # a looser reader still accepts it
    with pytest.raises(UnknownAsset):
        oracle.get_price(f"BTC@{CHAIN_ID}", 3600)  # other assets are independent

    receipt = oracle.set_price(asset, 3_100 * 10**8, env.reporter)
    GAS_REPORT["oracle.set_price (update)"] = receipt.gas_used
    assert oracle.get_price(asset, 60) == 3_100 * 10**8


def test_oracle_refusals_change_nothing(env: Env) -> None:
    oracle = env.oracle
    asset = f"USDC@{CHAIN_ID}"
    oracle.set_price(asset, 10**8, env.reporter)
    before = oracle.latest(asset)
    expect_revert(
        OracleRevert.NOT_REPORTER, lambda: oracle.set_price(asset, 2 * 10**8, env.mallory)
    )
    expect_revert(
        OracleRevert.NOT_REPORTER, lambda: oracle.set_price(asset, 2 * 10**8, env.deployer)
    )
    key = compute_asset_key(asset)
    expect_revert(
        OracleRevert.ZERO_PRICE, lambda: raw_transact(oracle, "set_price", [key, 0], env.reporter)
    )
    assert oracle.latest(asset) == before
    expect_revert(
        OracleRevert.NOT_OWNER, lambda: oracle.set_reporter(env.addr(env.mallory), env.mallory)
    )
    expect_revert(
        OracleRevert.ZERO_ADDRESS,
        lambda: raw_transact(oracle, "set_reporter", [ZERO], env.deployer),
    )
    assert oracle.get_reporter() == env.addr(env.reporter)


def test_oracle_owner_replaces_the_reporter(env: Env) -> None:
    adapter = env.adapter
    oracle = PriceOracle(
        adapter, deploy_price_oracle(adapter, env.deployer, env.addr(env.reporter))
    )
    receipt = oracle.set_reporter(env.addr(env.carol), env.deployer)
    GAS_REPORT["oracle.set_reporter"] = receipt.gas_used
    assert oracle.get_reporter() == env.addr(env.carol)
    expect_revert(OracleRevert.NOT_REPORTER, lambda: oracle.set_price("X@1", 5, env.reporter))
    oracle.set_price("X@1", 5, env.carol)
    assert oracle.get_price("X@1", 10) == 5


def test_oracle_local_argument_checks(env: Env) -> None:
    oracle = env.oracle
    for price in (0, -1, 2**256, True, 1.5):
        expect_local_error(env, env.reporter, oracle.set_price, "ETH@1", price, env.reporter)
    for asset in ("", "x" * 129, b"ETH@1"):
        expect_local_error(env, env.reporter, oracle.set_price, asset, 1, env.reporter)
        with pytest.raises(ChainConfigError):
            compute_asset_key(asset)  # type: ignore[arg-type]
    for max_age in (-1, 2**256, None):
        expect_local_error(env, env.alice, oracle.get_price, "ETH@1", max_age)
    expect_local_error(env, env.deployer, lambda: oracle.set_reporter(ZERO, env.deployer))
    expect_local_error(env, env.deployer, lambda: oracle.set_reporter("0x1234", env.deployer))
    expect_local_error(
        env, env.deployer, lambda: deploy_price_oracle(env.adapter, env.deployer, ZERO)
    )


# ----------------------------------------------------------------------------- DepositToken


def test_token_mint_transfer_approve(env: Env) -> None:
    token = env.token
    alice, bob, carol = env.addr(env.alice), env.addr(env.bob), env.addr(env.carol)
    assert (token.token_name(), token.symbol(), token.decimals()) == ("Deposit USD", "dUSD", 6)
    assert token.get_owner() == env.addr(env.deployer)
    supply = token.total_supply()
    base = {a: token.balance_of(a) for a in (alice, bob, carol)}

    receipt = token.mint(alice, 1_000_000, env.deployer)
    GAS_REPORT["token.mint"] = receipt.gas_used
    assert token.decode_events(receipt) == [
        ("Transfer", {"sender": ZERO, "receiver": alice, "value": 1_000_000})
    ]
    assert token.total_supply() == supply + 1_000_000

    receipt = token.transfer(bob, 250_000, env.alice)
    GAS_REPORT["token.transfer"] = receipt.gas_used
    assert token.decode_events(receipt) == [
        ("Transfer", {"sender": alice, "receiver": bob, "value": 250_000})
    ]
    receipt = token.approve(carol, 300_000, env.alice)
    GAS_REPORT["token.approve"] = receipt.gas_used
    assert token.decode_events(receipt) == [
        ("Approval", {"owner": alice, "spender": carol, "value": 300_000})
    ]
    receipt = token.transfer_from(alice, carol, 100_000, env.carol)
    GAS_REPORT["token.transfer_from"] = receipt.gas_used
    assert token.allowance(alice, carol) == 200_000
    assert token.balance_of(alice) == base[alice] + 650_000
    assert token.balance_of(bob) == base[bob] + 250_000
    assert token.balance_of(carol) == base[carol] + 100_000
    assert token.total_supply() == supply + 1_000_000

    token.approve(carol, UNLIMITED, env.alice)
    token.transfer_from(alice, bob, 50_000, env.carol)
    assert token.allowance(alice, carol) == UNLIMITED  # unlimited is never decreased


def test_token_transfer_signed_elsewhere(env: Env) -> None:
    """encode_transfer: the calldata an enclave signs for a deposit key's transfer."""
    token = env.token
    sender, receiver = env.addr(env.bob), fresh_address()
    token.mint(sender, 42, env.deployer)
    data = token.encode_transfer(receiver, 42)
    assert data[:4] == keccak(b"transfer(address,uint256)")[:4]
    balance = token.balance_of(sender)
    receipt = env.adapter.transact(env.bob, to=token.address, data=data)
    assert env.adapter.get_transaction_input(receipt.tx_hash) == data
    assert token.balance_of(receiver) == 42
    assert token.balance_of(sender) == balance - 42


def test_token_refusals_change_nothing(env: Env) -> None:
    token = env.token
    alice, bob, mallory = env.addr(env.alice), env.addr(env.bob), env.addr(env.mallory)
    token.mint(alice, 1_000, env.deployer)
    token.approve(bob, 10, env.alice)

    def state() -> tuple[int, ...]:
        return (
            token.total_supply(),
            token.balance_of(alice),
            token.balance_of(bob),
            token.balance_of(mallory),
            token.allowance(alice, bob),
        )

    before = state()
    held = token.balance_of(alice)
    expect_revert(
        TokenRevert.INSUFFICIENT_BALANCE, lambda: token.transfer(bob, held + 1, env.alice)
    )
    expect_revert(TokenRevert.INSUFFICIENT_BALANCE, lambda: token.transfer(alice, 1, env.mallory))
    expect_revert(
        TokenRevert.INSUFFICIENT_ALLOWANCE, lambda: token.transfer_from(alice, bob, 11, env.bob)
    )
    expect_revert(
        TokenRevert.INSUFFICIENT_ALLOWANCE, lambda: token.transfer_from(alice, bob, 1, env.mallory)
    )
    token.approve(bob, held + 5, env.alice)
    expect_revert(
        TokenRevert.INSUFFICIENT_BALANCE,
        lambda: token.transfer_from(alice, bob, held + 1, env.bob),
    )
    token.approve(bob, 10, env.alice)
    expect_revert(TokenRevert.NOT_OWNER, lambda: token.mint(mallory, 10**9, env.mallory))
    expect_revert(TokenRevert.NOT_OWNER, lambda: token.mint(mallory, 10**9, env.alice))
    for fn, args in (
        ("transfer", [ZERO, 1]),
        ("transferFrom", [alice, ZERO, 1]),
        ("approve", [ZERO, 1]),
        ("mint", [ZERO, 1]),
    ):
        sender = env.bob if fn == "transferFrom" else env.alice
        sender = env.deployer if fn == "mint" else sender
        expect_revert(
            TokenRevert.ZERO_ADDRESS,
            raw_transact,
            token,
            fn,
            args,
            sender,
        )
    assert state() == before


def test_token_local_argument_checks(env: Env) -> None:
    token = env.token
    bob = env.addr(env.bob)
    for amount in (-1, 2**256, True, 1.0):
        expect_local_error(env, env.alice, token.transfer, bob, amount, env.alice)
        expect_local_error(env, env.alice, token.encode_transfer, bob, amount)
    for to in (ZERO, "0x1234", "not an address"):
        expect_local_error(env, env.alice, token.transfer, to, 1, env.alice)
        expect_local_error(env, env.deployer, token.mint, to, 1, env.deployer)
        expect_local_error(env, env.alice, token.approve, to, 1, env.alice)
        expect_local_error(env, env.alice, token.encode_transfer, to, 1)
    expect_local_error(
        env, env.bob, lambda: token.transfer_from(env.addr(env.alice), ZERO, 1, env.bob)
    )
    for name, symbol, decimals in (("", "X", 6), ("X", "", 6), ("X", "Y" * 33, 6), ("X", "Y", 37)):
        expect_local_error(
            env,
            env.deployer,
            deploy_deposit_token,
            env.adapter,
            env.deployer,
            name,
            symbol,
            decimals,
        )


# ----------------------------------------------------------------------------- InsurancePool


def pool_state(pool: InsurancePool, *addresses: str) -> tuple[object, ...]:
    """Everything a refusal must leave alone (ETH balances included)."""
    adapter = pool.adapter
    assert adapter.balance(pool.address) == pool.get_pool() + pool.get_total_bonded()
    return (
        pool.get_pool(),
        pool.get_total_bonded(),
        adapter.balance(pool.address),
        *(
            (
                pool.get_bond(a),
                pool.is_slashed(a),
                pool.get_unbond_requested_at(a),
                adapter.balance(a),
            )
            for a in addresses
        ),
    )


def test_bonds_fees_slash_and_compensate(env: Env) -> None:
    pool = env.pool
    adapter = env.adapter
    alice, bob = env.addr(env.alice), env.addr(env.bob)
    victim = fresh_address()
    assert pool.get_owner() == env.addr(env.deployer)
    assert pool.get_operator() == env.addr(env.operator)
    assert pool.get_unbonding_period() == UNBONDING
    start_block = adapter.get_block_number()
    pool_before = pool.get_pool()

    receipt = pool.post_bond(2 * ETHER, env.alice)
    GAS_REPORT["pool.post_bond (first)"] = receipt.gas_used
    assert pool.decode_events(receipt) == [
        ("BondPosted", {"owner": alice, "amount": 2 * ETHER, "total": 2 * ETHER})
    ]
    receipt = pool.post_bond(ETHER, env.alice)
    GAS_REPORT["pool.post_bond (top-up)"] = receipt.gas_used
    assert pool.decode_events(receipt)[0][1]["total"] == 3 * ETHER
    assert pool.get_bond(alice) == 3 * ETHER

    request_id = os.urandom(32)
    receipt = pool.pay_fee(request_id, ETHER // 10, env.bob)
    GAS_REPORT["pool.pay_fee"] = receipt.gas_used
    assert pool.decode_events(receipt) == [
        ("FeePaid", {"payer": bob, "request_id": request_id, "amount": ETHER // 10})
    ]
    assert pool.get_pool() == pool_before + ETHER // 10

    evidence = os.urandom(32)
    receipt = pool.slash(alice, ETHER, evidence, env.operator)
    GAS_REPORT["pool.slash"] = receipt.gas_used
    assert pool.decode_events(receipt) == [
        ("Slashed", {"owner": alice, "amount": ETHER, "evidence": evidence})
    ]
    assert pool.get_bond(alice) == 2 * ETHER and pool.is_slashed(alice)
    assert pool.get_pool() == pool_before + ETHER + ETHER // 10

    claim_id = os.urandom(32)
    assert not pool.is_claim_paid(claim_id)
    receipt = pool.compensate(victim, ETHER // 2, claim_id, env.operator)
    GAS_REPORT["pool.compensate"] = receipt.gas_used
    assert adapter.balance(victim) == ETHER // 2
    assert pool.is_claim_paid(claim_id)
    assert pool.get_pool() == pool_before + ETHER // 2 + ETHER // 10
    pool_state(pool)  # the ETH held is still bonds + pool

    [slash] = pool.get_slashes(start_block)
    assert (slash.owner, slash.amount, slash.evidence) == (alice, ETHER, evidence)
    [paid] = pool.get_compensations(start_block)
    assert (paid.victim, paid.amount, paid.claim_id) == (victim, ETHER // 2, claim_id)
    assert paid.block_number == receipt.block_number
    assert pool.get_slashes(receipt.block_number) == []


def test_slash_takes_at_most_the_bond(env: Env) -> None:
    pool = env.pool
    carol = env.addr(env.carol)
    pool.post_bond(ETHER, env.carol)
    pool_before = pool.get_pool()
    receipt = pool.slash(carol, 5 * ETHER, os.urandom(32), env.operator)
    [(_, event)] = pool.decode_events(receipt)
    assert event["amount"] == ETHER
    assert pool.get_bond(carol) == 0 and pool.is_slashed(carol)
    assert pool.get_pool() == pool_before + ETHER
    pool_state(pool, carol)


def test_operator_only_and_claim_refusals_change_nothing(env: Env) -> None:
    pool = env.pool
    mallory, bob = env.addr(env.mallory), env.addr(env.bob)
    pool.post_bond(ETHER, env.bob)
    pool.pay_fee(os.urandom(32), ETHER, env.mallory)
    claim_id = os.urandom(32)
    pool.compensate(mallory, 1, claim_id, env.operator)
    before = pool_state(pool, mallory, bob)
    evidence = os.urandom(32)
    for key in (env.mallory, env.deployer, env.bob):
        expect_revert(InsuranceRevert.NOT_OPERATOR, pool.slash, bob, ETHER, evidence, key)
        expect_revert(
            InsuranceRevert.NOT_OPERATOR, pool.compensate, mallory, 1, os.urandom(32), key
        )
    expect_revert(
        InsuranceRevert.CLAIM_ALREADY_PAID,
        lambda: pool.compensate(mallory, 1, claim_id, env.operator),
    )
    expect_revert(
        InsuranceRevert.POOL_TOO_SMALL,
        lambda: pool.compensate(mallory, pool.get_pool() + 1, os.urandom(32), env.operator),
    )
    expect_revert(InsuranceRevert.NOT_OWNER, lambda: pool.set_operator(mallory, env.mallory))
    expect_revert(InsuranceRevert.NOT_OWNER, lambda: pool.set_operator(mallory, env.operator))
    for fn, args, key, value in (
        ("slash", [bob, 0, evidence], env.operator, 0),
        ("compensate", [mallory, 0, os.urandom(32)], env.operator, 0),
        ("compensate", [ZERO, 1, os.urandom(32)], env.operator, 0),
        ("set_operator", [ZERO], env.deployer, 0),
        ("post_bond", [], env.mallory, 0),
        ("pay_fee", [os.urandom(32)], env.mallory, 0),
        ("withdraw_bond", [0], env.bob, 0),
    ):
        reason = InsuranceRevert.ZERO_ADDRESS if ZERO in args else InsuranceRevert.ZERO_AMOUNT
        expect_revert(reason, raw_transact, pool, fn, args, key, value)
    assert pool_state(pool, mallory, bob) == before
    assert not pool.is_slashed(bob)
    assert pool.get_operator() == env.addr(env.operator)


def test_a_mined_revert_changes_nothing_but_the_fee(env: Env) -> None:
    """Skip the estimate (fixed gas): the double claim is mined with status 0."""
    pool = env.pool
    victim = fresh_address()
    pool.pay_fee(os.urandom(32), ETHER, env.alice)
    claim_id = os.urandom(32)
    pool.compensate(victim, 7, claim_id, env.operator)
    before = pool_state(pool, victim)
    data = pool.codec.function("compensate").encode_call([victim, 7, claim_id])
    with pytest.raises(TransactionReverted) as info:
        env.adapter.transact(env.operator, to=pool.address, data=data, gas=100_000)
    assert info.value.reason == InsuranceRevert.CLAIM_ALREADY_PAID
    assert info.value.tx_hash is not None
    receipt = env.adapter.wait_for_receipt(info.value.tx_hash, check=False)
    assert receipt.status == 0 and receipt.logs == []
    assert pool_state(pool, victim) == before


def test_unbonding(env: Env) -> None:
    pool = env.pool
    adapter = env.adapter
    owner_key = adapter.dev_keys[7]
    owner = env.addr(owner_key)
    expect_revert(InsuranceRevert.NO_BOND, lambda: pool.request_unbond(owner_key))
    pool.post_bond(3 * ETHER, owner_key)
    expect_revert(
        InsuranceRevert.UNBOND_NOT_REQUESTED, lambda: pool.withdraw_bond(ETHER, owner_key)
    )

    receipt = pool.request_unbond(owner_key)
    GAS_REPORT["pool.request_unbond"] = receipt.gas_used
    requested_at = adapter.get_block(receipt.block_number).timestamp
    assert pool.get_unbond_requested_at(owner) == requested_at
    assert pool.decode_events(receipt) == [
        (
            "UnbondRequested",
            {"owner": owner, "bond": 3 * ETHER, "available_at": requested_at + UNBONDING},
        )
    ]
    before = pool_state(pool, owner)
    expect_revert(InsuranceRevert.UNBONDING_NOT_OVER, lambda: pool.withdraw_bond(ETHER, owner_key))
    adapter.increase_time(UNBONDING // 2)
    expect_revert(InsuranceRevert.UNBONDING_NOT_OVER, lambda: pool.withdraw_bond(ETHER, owner_key))
    assert pool_state(pool, owner) == before

    # a new request restarts the clock
    restarted = adapter.get_block(pool.request_unbond(owner_key).block_number).timestamp
    adapter.increase_time(UNBONDING - 100)  # past the first request's end, not the second's
    assert env.now() >= requested_at + UNBONDING
    expect_revert(InsuranceRevert.UNBONDING_NOT_OVER, lambda: pool.withdraw_bond(ETHER, owner_key))
    adapter.increase_time(restarted + UNBONDING - env.now())
    before = pool_state(pool, owner)
    expect_revert(
        InsuranceRevert.INSUFFICIENT_BOND, lambda: pool.withdraw_bond(3 * ETHER + 1, owner_key)
    )
    assert pool_state(pool, owner) == before

    balance = adapter.balance(owner)
    receipt = pool.withdraw_bond(ETHER, owner_key)
    GAS_REPORT["pool.withdraw_bond"] = receipt.gas_used
    fee = (
        int(
            adapter.web3.eth.get_transaction_receipt(receipt.tx_hash)["effectiveGasPrice"]  # type: ignore[arg-type]
        )
        * receipt.gas_used
    )
    assert adapter.balance(owner) == balance + ETHER - fee
    assert pool.decode_events(receipt) == [
        ("BondWithdrawn", {"owner": owner, "amount": ETHER, "remaining": 2 * ETHER})
    ]
    assert pool.get_bond(owner) == 2 * ETHER
    assert pool.get_unbond_requested_at(owner) == 0  # the next withdrawal waits again
    expect_revert(
        InsuranceRevert.UNBOND_NOT_REQUESTED, lambda: pool.withdraw_bond(ETHER, owner_key)
    )

    # topping up cancels a pending request
    pool.request_unbond(owner_key)
    adapter.increase_time(UNBONDING)
    pool.post_bond(1, owner_key)
    assert pool.get_unbond_requested_at(owner) == 0
    expect_revert(
        InsuranceRevert.UNBOND_NOT_REQUESTED, lambda: pool.withdraw_bond(ETHER, owner_key)
    )
    pool_state(pool, owner)


def test_a_slashed_bond_never_leaves(env: Env) -> None:
    pool = env.pool
    adapter = env.adapter
    owner_key = adapter.dev_keys[8]
    owner = env.addr(owner_key)
    pool.post_bond(2 * ETHER, owner_key)
    pool.request_unbond(owner_key)
    adapter.increase_time(UNBONDING + 1)
    pool.slash(owner, ETHER, os.urandom(32), env.operator)  # within the window it had
    before = pool_state(pool, owner)
    expect_revert(InsuranceRevert.BOND_SLASHED, lambda: pool.withdraw_bond(ETHER, owner_key))
    expect_revert(InsuranceRevert.BOND_SLASHED, lambda: pool.request_unbond(owner_key))
    expect_revert(InsuranceRevert.BOND_SLASHED, lambda: pool.post_bond(ETHER, owner_key))
    adapter.increase_time(10 * UNBONDING)
    expect_revert(InsuranceRevert.BOND_SLASHED, lambda: pool.withdraw_bond(1, owner_key))
    assert pool_state(pool, owner) == before
    assert pool.get_bond(owner) == ETHER


def test_owner_replaces_the_operator(env: Env) -> None:
    adapter = env.adapter
    pool = InsurancePool(
        adapter, deploy_insurance_pool(adapter, env.deployer, env.addr(env.operator), 0)
    )
    receipt = pool.set_operator(env.addr(env.carol), env.deployer)
    GAS_REPORT["pool.set_operator"] = receipt.gas_used
    assert pool.get_operator() == env.addr(env.carol)
    pool.post_bond(ETHER, env.alice)
    expect_revert(
        InsuranceRevert.NOT_OPERATOR,
        lambda: pool.slash(env.addr(env.alice), 1, os.urandom(32), env.operator),
    )
    pool.slash(env.addr(env.alice), 1, os.urandom(32), env.carol)
    assert pool.get_pool() == 1
    # a zero unbonding period: withdraw right after the request (in a later block)
    pool.post_bond(ETHER, env.bob)
    pool.request_unbond(env.bob)
    pool.withdraw_bond(ETHER, env.bob)
    assert pool.get_bond(env.addr(env.bob)) == 0


def test_pool_local_argument_checks(env: Env) -> None:
    pool = env.pool
    bob = env.addr(env.bob)
    for amount in (0, -1, 2**256, True):
        expect_local_error(env, env.bob, pool.post_bond, amount, env.bob)
        expect_local_error(env, env.bob, pool.withdraw_bond, amount, env.bob)
        expect_local_error(env, env.bob, pool.pay_fee, os.urandom(32), amount, env.bob)
        expect_local_error(env, env.operator, pool.slash, bob, amount, os.urandom(32), env.operator)
        expect_local_error(
            env, env.operator, pool.compensate, bob, amount, os.urandom(32), env.operator
        )
    for b32 in (b"", os.urandom(31), os.urandom(33), "00" * 32):
        expect_local_error(env, env.bob, pool.pay_fee, b32, 1, env.bob)
        expect_local_error(env, env.operator, pool.slash, bob, 1, b32, env.operator)
        expect_local_error(env, env.operator, pool.compensate, bob, 1, b32, env.operator)
        expect_local_error(env, env.alice, pool.is_claim_paid, b32)
    expect_local_error(env, env.operator, pool.compensate, ZERO, 1, os.urandom(32), env.operator)
    expect_local_error(env, env.deployer, pool.set_operator, ZERO, env.deployer)
    expect_local_error(env, env.deployer, pool.set_operator, "0xabc", env.deployer)
    for operator, period in ((ZERO, 10), (bob, -1), (bob, 2**64), (bob, True)):
        expect_local_error(
            env, env.deployer, deploy_insurance_pool, env.adapter, env.deployer, operator, period
        )
