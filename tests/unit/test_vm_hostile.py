"""Run-time containment of hostile contract code in the WebAssembly VM.

Each attack runs as a command of a ``Hostile`` contract that first writes storage, then
misbehaves. The command must fail with the expected error code, leave the contract's
storage exactly as it was, and leave a well-behaved ``Counter`` on the same executor
working exactly as on a fresh one (same outcome, same gas). Every attack is stopped by
fuel, the memory limit, the stack limit or a host check -- never by luck: nothing here may
hang, and none of it may stop the process.

The catalog holds the attacks of issue 13 (work done in C that Python-level metering could
not see, swallowed callee failures, oversized writes, state outside storage, planted
values on shared classes, message floods) and the earlier sandbox catalog where it still
applies.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.hostile_catalog import MEMORY_BOMBS, RECURSION, RUNAWAY, hostile_source
from sealbridge.contracts.executor import CallOutcome, ContractProgram, Executor, load_program
from sealbridge.contracts.gas import MAX_MESSAGES_PER_COMMAND
from sealbridge.contracts.storage import PersistedStorage

ALICE = b"\xa1" * 32
HOSTILE_ID = b"\x0b" * 32
COUNTER_ID = b"\x0c" * 32
DOMAIN = b"hostile-tests"
GAS = 300_000  # for attacks: enough to show they are stopped, cheap to exhaust
WORK_GAS = 5_000_000  # for commands that must succeed
MIB = 1 << 20

COUNTER = """
from sealbridge.contracts.sdk import ANYONE, Contract, Value, command, query


class Counter(Contract):
    count = Value(int, default=0)

    @command
    def bump(self) -> int:
        total = 0
        for i in range(100):
            total = total + i * i
        self.count = self.count + 1
        return total + self.count

    @query(readers=ANYONE)
    def current(self) -> int:
        return self.count
"""

_COUNTER_PROGRAM: ContractProgram | None = None


def counter_program() -> ContractProgram:
    global _COUNTER_PROGRAM
    if _COUNTER_PROGRAM is None:
        _COUNTER_PROGRAM = load_program(COUNTER.encode())
    return _COUNTER_PROGRAM


def command(ex: Executor, cid: bytes, method: str, gas: int = WORK_GAS, **args: Any) -> CallOutcome:
    return ex.run_command(
        cid, method, args, caller=ALICE, block_number=1, seed=b"seed", gas_limit=gas
    )


def query(ex: Executor, cid: bytes, method: str, **args: Any) -> CallOutcome:
    return ex.run_query(cid, method, args, caller=ALICE, block_number=1)


def counter_baseline() -> CallOutcome:
    ex = Executor()
    ex.add(COUNTER_ID, counter_program(), deployer=ALICE, domain=DOMAIN)
    return command(ex, COUNTER_ID, "bump")


def make_world(body: str, helpers: str = "", methods: str = "") -> Executor:
    ex = Executor()
    ex.add(COUNTER_ID, counter_program(), deployer=ALICE, domain=DOMAIN)
    program = load_program(hostile_source(body, helpers, methods).encode())
    ex.add(HOSTILE_ID, program, deployer=ALICE, domain=DOMAIN)
    return ex


def attack(
    body: str,
    error: str,
    *,
    helpers: str = "",
    methods: str = "",
    gas: int = GAS,
    world: Executor | None = None,
) -> CallOutcome:
    """Run ``body`` in the hostile command and check containment; return the outcome."""
    ex = world or make_world(body, helpers, methods)
    before = ex.get(HOSTILE_ID).storage.snapshot()
    out = command(ex, HOSTILE_ID, "go", gas=gas)
    assert not out.ok, out
    assert out.error == error, out
    assert out.gas_used <= gas
    assert out.value is None and out.messages == []
    # every write of the failed command is undone
    assert ex.get(HOSTILE_ID).storage.snapshot() == before
    # the neighbour on the same executor (same meter) behaves exactly as on a fresh one
    assert command(ex, COUNTER_ID, "bump") == counter_baseline()
    assert query(ex, COUNTER_ID, "current").value == 1
    return out


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


# -- work the interpreter does in C is metered by construction ---------------------------
@pytest.mark.parametrize("body", list(RUNAWAY.values()), ids=list(RUNAWAY))
def test_runaway_work_runs_out_of_gas(body: str) -> None:
    out = attack(body, "out_of_gas")
    assert out.gas_used == GAS


@pytest.mark.parametrize("body", list(MEMORY_BOMBS.values()), ids=list(MEMORY_BOMBS))
def test_memory_bombs_stop_at_the_memory_limit(body: str) -> None:
    out = attack(body, "out_of_memory", gas=WORK_GAS)
    assert out.gas_used == WORK_GAS  # a trap or memory exhaustion consumes all the gas


def test_infinite_recursion_is_stopped() -> None:
    out = attack(RECURSION["python_recursion"], "call_depth_exceeded", gas=WORK_GAS)
    assert "line" in out.message


def test_recursion_in_c_is_stopped() -> None:
    # repr of a deeply nested list recurses in C, not in Python frames
    attack(RECURSION["c_recursion"], "stack_overflow", gas=WORK_GAS)


# -- a failed call cannot be kept --------------------------------------------------------------
VICTIM_ID = b"\x0d" * 32
VICTIM = """
from sealbridge.contracts.sdk import ANYONE, Contract, Value, command, query, require


class Victim(Contract):
    shares = Value(int, default=0)

    @command
    def book_then_fail(self) -> int:
        self.shares = self.shares + 1000
        require(False, "payment failed", "insufficient_allowance")
        return 0

    @command
    def book(self) -> int:
        self.shares = self.shares + 1
        return self.shares

    @query(readers=ANYONE)
    def booked(self) -> int:
        return self.shares
"""


@pytest.mark.parametrize(
    "body",
    [
        "try:\n    self.call(VICTIM, 'book_then_fail')\nfinally:\n    raise ValueError('swallow')",
        "try:\n    self.call(VICTIM, 'book_then_fail')\nexcept ValueError:\n    pass",
        "try:\n    self.call(VICTIM, 'book_then_fail')\nexcept ContractError:\n    pass",
        "try:\n    self.call(VICTIM, 'book_then_fail')\nfinally:\n    return 5",
    ],
)
def test_a_failed_callee_fails_the_whole_command(body: str) -> None:
    helpers = f"VICTIM = {VICTIM_ID!r}"
    ex = Executor()
    ex.add(COUNTER_ID, counter_program(), deployer=ALICE, domain=DOMAIN)
    ex.add(VICTIM_ID, load_program(VICTIM.encode()), deployer=ALICE, domain=DOMAIN)
    try:
        source = hostile_source(body, helpers)
        ex.add(HOSTILE_ID, load_program(source.encode()), deployer=ALICE, domain=DOMAIN)
    except Exception as exc:  # the policy may refuse 'return' in 'finally' at deploy
        assert "finally" in str(exc)
        return
    out = attack(body, "insufficient_allowance", world=ex, gas=WORK_GAS)
    assert "payment failed" in out.message
    assert query(ex, VICTIM_ID, "booked").value == 0
    # the callee's instance still serves well-formed commands
    assert command(ex, VICTIM_ID, "book").value == 1


def test_callee_writes_survive_only_with_the_caller() -> None:
    helpers = f"VICTIM = {VICTIM_ID!r}"
    ex = Executor()
    ex.add(COUNTER_ID, counter_program(), deployer=ALICE, domain=DOMAIN)
    ex.add(VICTIM_ID, load_program(VICTIM.encode()), deployer=ALICE, domain=DOMAIN)
    body = "self.call(VICTIM, 'book')\nrequire_fail = 1 // 0"
    ex.add(
        HOSTILE_ID,
        load_program(hostile_source(body, helpers).encode()),
        deployer=ALICE,
        domain=DOMAIN,
    )
    attack(body, "contract_exception", world=ex, gas=WORK_GAS)
    assert query(ex, VICTIM_ID, "booked").value == 0


def test_reentrant_call_is_refused() -> None:
    out = attack("self.call(self.env.contract_id, 'go')", "reentrant_call")
    assert "re-entrant" in out.message


def test_call_to_unknown_contract_fails_the_command() -> None:
    attack("self.call(b'\\x99' * 32, 'go')", "unknown_contract")


# -- sizes the enclave could not carry are refused as the command's failure ----------------------
@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("self.items = ['x' * (8 * MIB)]", "too_large"),
        ("for i in range(9):\n    self.blobs[i] = 'x' * (8 * MIB)", "too_large"),
        ("for i in range(9):\n    self.blobs[i] = 'x' * 600_000", "too_large"),
        ("return 'x' * (2 * MIB)", "too_large"),
        ("self.items = [range(3)]", "storage_error"),
        ("self.items = [self]", "storage_error"),
        ("self.items = [lambda: 0]", "storage_error"),
        ("self.n = 2**64", "storage_error"),
        ("self.items = [2**64]", "storage_error"),
        ("self.table = {1: 2}", "storage_error"),
        ("self.n = 'seven'", "storage_error"),
        ("self.m[b'k'] = [1]", "storage_error"),
        ("self.m['k'] = 1", "storage_error"),
        ("self.m = 1", "storage_error"),
        ("self.x = 1", "storage_error"),
        ("return {1: 2}", "bad_result"),
        ("return range(3)", "bad_result"),
        ("return self", "bad_result"),
        ("x = []\nfor i in range(200):\n    x = [x]\nself.items = x", "storage_error"),
    ],
)
def test_unstorable_or_oversized_values_are_refused(body: str, error: str) -> None:
    attack(body.replace("MIB", str(MIB)), error, gas=WORK_GAS)


def test_deeply_nested_arguments_are_refused_before_any_code_runs() -> None:
    methods = """
    @command
    def echo(self, value):
        self.n = 1
        return 0
    """
    ex = make_world("pass", methods=methods)
    before = ex.get(HOSTILE_ID).storage.snapshot()
    for depth in (100, 1000, 100_000):
        out = command(ex, HOSTILE_ID, "echo", value=nested(depth))
        assert not out.ok and out.error == "bad_arguments", (depth, out)
    assert ex.get(HOSTILE_ID).storage.snapshot() == before
    assert command(ex, HOSTILE_ID, "echo", value=nested(10)).ok


# -- messages are paid for and capped -------------------------------------------------------------
def test_a_message_flood_is_refused_whole() -> None:
    body = f"for i in range(100000):\n    self.send({COUNTER_ID!r}, 'bump')"
    out = attack(body, "too_many_messages", gas=50_000_000)
    assert str(MAX_MESSAGES_PER_COMMAND) in out.message


def test_messages_cost_what_posting_them_costs() -> None:
    methods = f"""
    @command
    def one(self) -> int:
        self.send({COUNTER_ID!r}, 'bump')
        return 0

    @command
    def none(self) -> int:
        return 0
    """
    ex = make_world("pass", methods=methods)
    sent = command(ex, HOSTILE_ID, "one")
    quiet = command(ex, HOSTILE_ID, "none")
    assert sent.ok and len(sent.messages) == 1
    assert sent.gas_used - quiet.gas_used >= 25_000


# -- no state crosses contracts, failures or blocks ---------------------------------------------
PLANTER = """
from sealbridge.contracts.sdk import ANYONE, Contract, ContractError, Value, command, query


class Planter(Contract):
    n = Value(int, default=0)

    @command
    def plant(self) -> int:
        ContractError.planted = 42
        return 1

    @query(readers=ANYONE)
    def read(self) -> int:
        return ContractError.planted
"""


def test_values_planted_on_sdk_classes_stay_in_their_contract() -> None:
    ex = Executor()
    first, second = b"\x31" * 32, b"\x32" * 32
    program = load_program(PLANTER.encode())
    ex.add(first, program, deployer=ALICE, domain=DOMAIN)
    ex.add(second, program, deployer=ALICE, domain=b"another-domain")
    assert command(ex, first, "plant").ok
    out = query(ex, second, "read")
    assert not out.ok and out.error == "contract_exception" and "planted" in out.message


CLOSURE = """
from sealbridge.contracts.sdk import ANYONE, Contract, Value, command, query


def remember(fn):
    seen = []

    def wrapped(self):
        seen.append(1)
        self.n = self.n + len(seen)
        return len(seen)

    return wrapped


class Closure(Contract):
    n = Value(int, default=0)

    @command
    @remember
    def tick(self):
        return 0
"""


def run_blocks(ex: Executor, cid: bytes, blocks: list[int]) -> list[CallOutcome]:
    return [
        ex.run_command(cid, "tick", {}, caller=ALICE, block_number=b, seed=b"s") for b in blocks
    ]


def test_state_outside_storage_never_outlives_a_block() -> None:
    # a closure may remember between commands of one block (every node runs the same
    # commands in the same instance), but never across blocks: a worker restarted at any
    # block boundary computes the same outcomes and gas as one that never stopped
    cid = b"\x41" * 32
    program = load_program(CLOSURE.encode())
    steady = Executor()
    steady.add(cid, program, deployer=ALICE)
    blocks = [1, 1, 1, 2, 2, 3]
    outcomes = run_blocks(steady, cid, blocks)
    assert [o.value for o in outcomes] == [1, 2, 3, 1, 2, 1]
    for cut in (3, 5):
        restarted = Executor()
        restarted.add(cid, program, deployer=ALICE)
        run_blocks(restarted, cid, blocks[:cut])
        fresh = Executor()  # a new process: storage from the snapshot, no instances
        fresh.add(cid, program, deployer=ALICE, storage=_copy_storage(restarted.get(cid).storage))
        assert run_blocks(fresh, cid, blocks[cut:]) == outcomes[cut:]


def _copy_storage(storage: Any) -> Any:
    from sealbridge.contracts.storage import Storage

    return Storage(storage.snapshot())


def test_a_failed_command_leaves_no_state_in_its_instance() -> None:
    cid = b"\x42" * 32
    source = CLOSURE.replace(
        "return len(seen)", "require(len(seen) > 1, 'first')\n        return len(seen)"
    ).replace("import ANYONE,", "import ANYONE, require,")
    ex = Executor()
    ex.add(cid, load_program(source.encode()), deployer=ALICE)
    first, second = run_blocks(ex, cid, [1, 1])
    assert not first.ok and not second.ok  # the failed command's instance was dropped


def test_query_cannot_write_storage() -> None:
    methods = """
    @query(readers=ANYONE)
    def sneaky(self) -> int:
        self.n = 99
        return self.n
    """
    ex = make_world("pass", methods=methods)
    assert command(ex, HOSTILE_ID, "go").ok
    before = ex.get(HOSTILE_ID).storage.snapshot()
    out = query(ex, HOSTILE_ID, "sneaky")
    assert not out.ok and out.error == "storage_error", out
    assert ex.get(HOSTILE_ID).storage.snapshot() == before
    assert command(ex, COUNTER_ID, "bump") == counter_baseline()


def test_query_that_runs_away_is_stopped() -> None:
    methods = """
    @query(readers=ANYONE)
    def spin(self) -> int:
        while True:
            pass
    """
    ex = make_world("pass", methods=methods)
    out = ex.run_query(HOSTILE_ID, "spin", {}, caller=ALICE, block_number=1, gas_limit=GAS)
    assert not out.ok and out.error == "out_of_gas"
    assert command(ex, COUNTER_ID, "bump") == counter_baseline()


def test_failed_attack_leaves_earlier_state_intact() -> None:
    ex = make_world("while True:\n    pass")
    assert command(ex, HOSTILE_ID, "store", size=3).ok
    stored = ex.get(HOSTILE_ID).storage.snapshot()
    assert stored != PersistedStorage()
    attack("", "out_of_gas", world=ex)
    assert ex.get(HOSTILE_ID).storage.snapshot() == stored


# -- determinism ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        "x = sorted([(i * 7919) % 1000 for i in range(2000)])",
        "d = {str(i): i for i in range(500)}\nx = sum(d.values())",
        "x = re.findall('[0-9]+', 'a1b22c333' * 100)",
        "x = [i / 3 for i in range(1000)]",
    ],
)
def test_same_command_same_gas_on_fresh_executors(body: str) -> None:
    outcomes = []
    for _ in range(2):
        ex = make_world(body)
        outcomes.append(command(ex, HOSTILE_ID, "go"))
    assert outcomes[0].ok and outcomes[0] == outcomes[1]


def test_gas_limit_is_exact() -> None:
    for limit in (100_000, 123_457):
        out = attack("while True:\n    pass", "out_of_gas", gas=limit)
        assert out.gas_used == limit


def test_runtime_errors_name_the_contract_line() -> None:
    out = attack("x = 1\ny = x // 0", "contract_exception")
    assert "ZeroDivisionError" in out.message and "line" in out.message
