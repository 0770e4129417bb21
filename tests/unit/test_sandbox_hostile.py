"""Run-time containment of hostile contract code in the sandbox.

Each attack runs as a command of a ``Hostile`` contract that first writes storage, then
misbehaves. The command must fail with the expected error code, leave the contract's
storage exactly as it was, and leave a well-behaved ``Counter`` on the same executor
working exactly as on a fresh one. Every attack is stopped by gas (or by the size and
depth limits), never by luck: nothing here may hang.
"""

from __future__ import annotations

import textwrap
import time
from typing import Any

import pytest

from sealbridge.contracts.errors import CodeRejected
from sealbridge.contracts.executor import ContractProgram, Executor, Outcome
from sealbridge.contracts.gas import MAX_INT_BITS, Meter, get_resident_bytes
from sealbridge.contracts.sandbox import Guards, load_source
from sealbridge.contracts.storage import PersistedStorage

ALICE = b"\xa1" * 32
HOSTILE_ID = b"\x0b" * 32
COUNTER_ID = b"\x0c" * 32
DOMAIN = b"hostile-tests"
GAS = 200_000  # for attacks: enough to show they are stopped, cheap to exhaust
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

HOSTILE = """
from sealbridge.contracts.sdk import ANYONE, Contract, ContractError, Map, Value, command, query

{helpers}


class Hostile(Contract):
    n = Value(int, default=0)
    items = Value(list, default=[])
    table = Value(dict, default={{}})
    m = Map(bytes, int, default=0)

    @command
    def go(self):
        self.n = 7
        self.m[b"k"] = 1
        self.items = [1, 2, 3]
{body}

    @command
    def store(self, size: int) -> int:
        self.items = list(range(size))
        return size

    @query(readers=ANYONE)
    def state(self) -> list:
        return [self.n, self.m[b"k"], self.items, self.table]

{methods}
"""

_COUNTER_PROGRAM: ContractProgram | None = None


def counter_program() -> ContractProgram:
    global _COUNTER_PROGRAM
    if _COUNTER_PROGRAM is None:
        _COUNTER_PROGRAM = load_source(COUNTER.encode())
    return _COUNTER_PROGRAM


def hostile_source(body: str, helpers: str = "", methods: str = "") -> str:
    return HOSTILE.format(
        body=textwrap.indent(textwrap.dedent(body).strip("\n"), " " * 8),
        helpers=textwrap.dedent(helpers),
        methods=textwrap.indent(textwrap.dedent(methods), " " * 4),
    )


def command(ex: Executor, cid: bytes, method: str, gas: int = WORK_GAS, **args: Any) -> Outcome:
    return ex.run_command(
        cid, method, args, caller=ALICE, block_number=1, seed=b"seed", gas_limit=gas
    )


def query(ex: Executor, cid: bytes, method: str, **args: Any) -> Outcome:
    return ex.run_query(cid, method, args, caller=ALICE, block_number=1)


def counter_baseline() -> Outcome:
    ex = Executor()
    ex.add(COUNTER_ID, counter_program(), deployer=ALICE, domain=DOMAIN)
    return command(ex, COUNTER_ID, "bump")


def make_world(body: str, helpers: str = "", methods: str = "") -> Executor:
    ex = Executor()
    ex.add(COUNTER_ID, counter_program(), deployer=ALICE, domain=DOMAIN)
    program = load_source(hostile_source(body, helpers, methods).encode())
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
) -> Outcome:
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


# -- runaway loops and recursion --------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        "while True:\n    pass",
        "i = 0\nwhile i >= 0:\n    i = i + 1",
        "for i in range(10**12):\n    pass",
        "x = [i for i in range(10**12)]",
        "x = {i: i for i in range(10**12)}",
        "x = sum(range(10**12))",
        "x = sum(i for i in range(10**12))",
        "x = sorted(range(10**12))",
        "x = list(range(10**12))",
        "x = tuple(range(10**12))",
        "x = [*range(10**12)]",
        "x = max(range(10**12))",
        "x = any(i < 0 for i in range(10**12))",
        "x = list(map(abs, range(10**12)))",
        "x = list(zip(range(10**12), range(10**12)))",
        "x = dict(enumerate(range(10**12)))",
        "l = []\nl.extend(range(10**12))",
        "x = ''.join(['x'] * 8_000_000)",
        "x = sorted([5] * 8_000_000, key=lambda v: -v)",
        "x = bytes(range(256))\nwhile True:\n    x = bytes(b for b in x)",
    ],
)
def test_runaway_loops_run_out_of_gas(body: str) -> None:
    attack(body, "out_of_gas")


def test_infinite_recursion_exceeds_call_depth() -> None:
    out = attack("f(0)", "call_depth_exceeded", helpers="def f(n):\n    return f(n + 1)\n")
    assert "64" in out.message


def test_recursive_method_exceeds_call_depth() -> None:
    attack("self.again()", "call_depth_exceeded", methods="def again(self):\n    self.again()\n")


def test_recursive_lambda_exceeds_call_depth() -> None:
    attack("f = lambda g: g(g)\nf(f)", "call_depth_exceeded")


def test_mutual_recursion_through_lambdas_and_functions() -> None:
    helpers = "def f(g):\n    return g(g)\n"
    attack("f(lambda h: f(h))", "call_depth_exceeded", helpers=helpers)


def test_deeply_nested_data_is_contained() -> None:
    body = "l = []\nfor i in range(200_000):\n    l = [l]\nself.items = l"
    out = attack(body, "call_depth_exceeded", gas=2_000_000)
    assert "recursion" in out.message


def test_catching_errors_does_not_outlive_the_gas() -> None:
    body = """
    while True:
        try:
            while True:
                x = [1][2]
        except (ValueError, KeyError, IndexError, LookupError, TypeError, ArithmeticError):
            pass
        except ContractError:
            pass
    """
    attack(body, "out_of_gas")


def test_catching_around_a_runaway_builtin_is_still_out_of_gas() -> None:
    body = """
    for i in range(10**12):
        try:
            sum(range(10**12))
        except (ValueError, TypeError, OverflowError):
            continue
    """
    attack(body, "out_of_gas")


def test_finally_blocks_cannot_resume_after_exhaustion() -> None:
    body = """
    for i in range(10**12):
        try:
            while True:
                pass
        finally:
            self.n = 8
            for j in range(10):
                pass
    """
    attack(body, "out_of_gas")


# -- size bombs -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        "x = 'x' * 10**12",
        "x = b'x' * 10**12",
        "x = [0] * 10**12",
        "x = (0,) * 10**12",
        "x = 10**12 * 'x'",
        "x = 'x'\nx *= 10**12",
        "x = 10 ** 10**9",
        "x = pow(10, 10**9)",
        "x = 1 << 10**12",
        "x = True << 10**12",
        "x = 'a'.ljust(10**12)",
        "x = 'a'.center(10**12)",
        "x = 'a'.zfill(10**12)",
        "x = b'a'.rjust(10**12)",
        "s = 'ab'\nwhile True:\n    s = s.replace('a', 'a' * 10**6)",
        "x = ''.join(['x' * 10**6] * 10**6)",
        "s = 'x'\nwhile True:\n    s = s + s",
        "s = [0]\nwhile True:\n    s = s + s",
        "x = bytes(10**12)",
        "x = (10**6).to_bytes(10**12, 'big')",
        "x = '\\t'.expandtabs(10**12)",
        "x = 7 ** 30_000",
        "x = (1 << 60_000) * (1 << 60_000)",
        "x = int('f' * 20_000, 16)",
        "x = int.from_bytes(bytes(9_000), 'big')",
        "x = int.from_bytes([1] * 9_000, 'big')",
        "x = round(5, -10**8)",
        "x = ('a' * 10_000).translate({97: 'b' * 10_000})",
        "x = ('a' * 10_000).translate(['b' * 10_000] * 128)",
    ],
)
def test_size_bombs_are_refused(body: str) -> None:
    started = time.perf_counter()
    attack(body, "out_of_memory", gas=2_000_000)
    assert time.perf_counter() - started < 5


def test_appending_in_a_loop_runs_out_of_gas_with_modest_memory() -> None:
    ex = make_world("l = []\nwhile True:\n    l.append(len(l))")
    ex.meter.memory_limit = 64 * MIB  # a memory stop would be reported as out_of_memory
    before = get_resident_bytes()
    out = attack("", "out_of_gas", world=ex, gas=500_000)
    assert out.gas_used == 500_000
    assert get_resident_bytes() - before < 64 * MIB


def test_big_chunks_trip_the_memory_limit_promptly() -> None:
    # each chunk is cheap in gas (8 MB for ~125k gas): the memory limit stops the loop
    ex = make_world("keep = []\nwhile True:\n    keep.append(b'x' * 8_000_000)")
    ex.meter.memory_limit = 64 * MIB
    before = get_resident_bytes()
    out = attack("", "out_of_memory", world=ex, gas=20_000_000)
    assert "memory grew" in out.message
    assert out.gas_used < 20_000_000
    assert get_resident_bytes() - before < (64 + 3 * 8) * MIB


def test_slices_are_charged_for_what_they_copy() -> None:
    # copying an 8M-item list by slicing must cost gas like building one
    body = "l = [0] * 1_000_000\nkeep = []\nwhile True:\n    keep.append(l[:])"
    ex = make_world(body)
    ex.meter.memory_limit = 1024 * MIB
    out = attack("", "out_of_gas", world=ex, gas=300_000)
    assert out.gas_used == 300_000  # about 18 copies: 1 + 1_000_000 // 64 gas each


# -- amplification by shared parts ------------------------------------------------------------
SHARED = "a = [0] * 1000\nb = [a] * 1000\nc = [b] * 1000\n"  # 10**9 items, 3000 of them built


@pytest.mark.parametrize(
    "use",
    [
        "x = str(c)",
        "x = repr(c)",
        "x = f'{c}'",
        "x = str([c, c])",
        "self.items = c",
        "self.table = {'c': c}",
        "self.m[b'z'] = 1\nself.items = [c]",
        "self.send(b'\\x09' * 32, 'go', data=c)",
        "return c",
    ],
)
def test_shared_parts_cannot_amplify_rendering_or_encoding(use: str) -> None:
    started = time.perf_counter()
    attack(SHARED + use, "out_of_memory", gas=2_000_000)
    assert time.perf_counter() - started < 5


def test_storage_reads_are_charged_for_what_they_copy() -> None:
    # a stored list is copied on every read: reading it must cost gas proportional to it
    methods = """
    @command
    def read(self, times: int) -> int:
        total = 0
        for i in range(times):
            total = total + len(self.items)
        return total
    """
    ex = make_world("pass", methods=methods)
    assert command(ex, HOSTILE_ID, "store", size=100_000).ok
    one = command(ex, HOSTILE_ID, "read", times=1)
    eleven = command(ex, HOSTILE_ID, "read", times=11)
    assert one.ok and eleven.ok
    assert eleven.gas_used - one.gas_used >= 10 * 100_000 // 64


# -- linear work of built-in methods and operators --------------------------------------------
@pytest.mark.parametrize(
    ("work", "size"),
    [
        ("l.insert(0, 1)", 1_000_000),
        ("l.pop(0)", 1_000_000),
        ("l.reverse()", 1_000_000),
        ("x = l.copy()", 1_000_000),
        ("x = l.count(5)", 1_000_000),
        ("x = l.index(0)", 1_000_000),
        ("x = 5 in l", 1_000_000),
        ("x = 5 not in l", 1_000_000),
        ("x = s.upper()", 1_000_000),
        ("x = s.find('y')", 1_000_000),
        ("x = 'y' in s", 1_000_000),
        ("x = l[1:]", 1_000_000),
        ("x = s[1:]", 1_000_000),
        ("x = float('1' + s[:-1].replace('x', '0'))", 1_000_000),
        ("x = bytes(s, 'ascii')", 1_000_000),
        ("x = str(l)", 1_000_000),
        ("x = f'{l}'", 1_000_000),
    ],
)
def test_linear_builtin_work_is_charged(work: str, size: int) -> None:
    methods = f"""
    @command
    def work(self, times: int) -> int:
        l = [0] * {size}
        s = 'x' * {size}
        for i in range(times):
            {work}
        return 0
    """
    ex = make_world("pass", methods=methods)
    one = command(ex, HOSTILE_ID, "work", times=1)
    eleven = command(ex, HOSTILE_ID, "work", times=11)
    assert one.ok and eleven.ok, (one, eleven)
    assert eleven.gas_used - one.gas_used >= 10 * size // 64


@pytest.mark.parametrize("work", ["x = {**d}", "x = dict(**d)", "x = dict(d)", "x = d.copy()"])
def test_dict_copies_are_charged(work: str) -> None:
    size = 100_000
    methods = f"""
    @command
    def work(self, times: int) -> int:
        d = {{str(i): i for i in range({size})}}
        for i in range(times):
            {work}
        return 0
    """
    ex = make_world("pass", methods=methods)
    one = command(ex, HOSTILE_ID, "work", times=1)
    eleven = command(ex, HOSTILE_ID, "work", times=11)
    assert one.ok and eleven.ok, (one, eleven)
    assert eleven.gas_used - one.gas_used >= 10 * size // 64


def test_summing_sequences_is_refused() -> None:
    # sum(lists, []) copies every partial result: quadratic work for linear gas
    out = attack("x = sum([[0] * 1000] * 1000, [])", "contract_exception")
    assert "numbers only" in out.message
    ex = make_world("return [sum([1, 2.5]), sum(range(4), 10), sum([])]")
    assert command(ex, HOSTILE_ID, "go").value == [3.5, 16, 0]


@pytest.mark.parametrize(
    "expression",
    ["a * a", "a // b", "a % b", "divmod(a, b)", "a ** 2", "pow(a, 2)"],
)
def test_big_integer_arithmetic_is_charged_for_its_work(expression: str) -> None:
    bits = MAX_INT_BITS // 2 - 8
    methods = f"""
    @command
    def work(self, times: int) -> int:
        a = (1 << {bits}) - 1
        b = (1 << {bits // 2}) + 1
        for i in range(times):
            x = {expression}
        return 0
    """
    ex = make_world("pass", methods=methods)
    one = command(ex, HOSTILE_ID, "work", times=1)
    eleven = command(ex, HOSTILE_ID, "work", times=11)
    assert one.ok and eleven.ok, (one, eleven)
    words = bits // 64
    assert eleven.gas_used - one.gas_used >= 10 * words * (words // 2) // 16


def test_methods_through_their_type_are_refused() -> None:
    # str.ljust(s, n) would skip the size check of s.ljust(n)
    for body in (
        "x = str.ljust('a', 10**9)",
        "x = str.join('', ['x'] * 10)",
        "x = bytes.ljust(b'a', 10**9)",
        "x = int.to_bytes(5, 10**9, 'big')",
        "l = []\nlist.extend(l, range(10**12))",
    ):
        out = attack(body, "contract_exception")
        assert "AttributeError" in out.message


# -- refused operations -----------------------------------------------------------------------
def test_percent_formatting_is_refused_at_run_time() -> None:
    out = attack("x = 1\ny = '%s' % x", "contract_exception")
    assert "formatting" in out.message
    attack("y = b'%d' % 5", "contract_exception")
    attack("y = 'a'\ny %= 5", "contract_exception")


def test_format_is_not_reachable_at_run_time() -> None:
    # ``'{0.__class__}'.format(x)`` reads attributes unguarded: 'format' is refused at deploy
    # (see test_sandbox_policy); the built-in ``format`` is simply not there
    out = attack("f = format\ny = f(self, '')", "contract_exception")
    assert "NameError" in out.message


@pytest.mark.parametrize(
    ("obj", "name"),
    [("{0}", "format"), ("{x}", "format_map"), (int, "mro"), ("", "__class__"), ((), "gi_frame")],
)
def test_attribute_guard_refuses_forbidden_names(obj: Any, name: str) -> None:
    # defence in depth: the guard refuses what the deploy check refuses, should a name
    # ever reach it some other way
    with pytest.raises(AttributeError):
        Guards(Meter()).getattr(obj, name)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("self.items = [range(3)]", "storage_error"),
        ("self.items = [{'a': 1}.values()]", "storage_error"),
        ("self.items = [b'x', bytes(2)]\nself.items = [zip([1])]", "storage_error"),
        ("self.items = [self]", "storage_error"),
        ("self.items = [lambda: 0]", "storage_error"),
        ("self.n = 2**64", "storage_error"),
        ("self.n = -(2**63) - 1", "storage_error"),
        ("self.items = [2**64]", "storage_error"),
        ("self.table = {1: 2}", "storage_error"),
        ("self.table = {'a': {(1, 2): 3}}", "storage_error"),
        ("self.n = 'seven'", "storage_error"),
        ("self.m[b'k'] = [1]", "storage_error"),
        ("self.m['k'] = 1", "storage_error"),
        ("self.m = 1", "storage_error"),
        ("self.x = 1", "storage_error"),
        ("self.env = 1", "storage_error"),
        ("self.go = 1", "storage_error"),
        ("return {1: 2}", "bad_result"),
        ("return range(3)", "bad_result"),
        ("return self", "bad_result"),
    ],
)
def test_unstorable_values_are_refused(body: str, error: str) -> None:
    attack(body, error)


def test_reentrant_call_is_refused() -> None:
    out = attack("self.call(self.env.contract_id, 'go')", "reentrant_call")
    assert "re-entrant" in out.message


def test_call_to_unknown_contract_fails_the_command() -> None:
    attack("self.call(b'\\x99' * 32, 'go')", "unknown_contract")


@pytest.mark.parametrize(
    "body", ["Hostile.items.default.append(1)", "Hostile.m.default", "Hostile.n.kind"]
)
def test_storage_declarations_hold_no_hidden_state(body: str) -> None:
    # a declaration's default is shared by every command of the executor: mutating it
    # would be state outside storage (never journaled, persisted or reverted)
    out = attack(body, "contract_exception")
    assert "storage declarations" in out.message


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
    assert query(ex, HOSTILE_ID, "state").value == [7, 1, [1, 2, 3], {}]
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


# -- guarded built-ins still behave like the real ones ----------------------------------------
def test_guarded_builtins_keep_working() -> None:
    methods = """
    @command
    def fine(self, unused: int | None = None) -> list:
        l = [3, 1, 2]
        s = 'héllo'
        n = int('ff', 16)
        return [
            list(reversed(l)),
            sorted(l),
            l[1:],
            s[1:3],
            str(12) + repr('x'),
            f'{l}-{n}',
            int.from_bytes(b'\\x01\\x00', 'big'),
            bytes.fromhex('ff').hex(),
            divmod(7, 2)[0],
            (1 << 70) // 3 % 1000,
            isinstance(s, str | bytes),
            isinstance(n, (int, float)),
            2 in l,
            'é' in s,
            len(dict.fromkeys(['a', 'b'])),
        ]
    """
    ex = make_world("pass", methods=methods)
    out = command(ex, HOSTILE_ID, "fine")
    assert out.ok, out
    assert out.value == [
        [2, 1, 3],
        [1, 2, 3],
        [1, 2],
        "él",
        "12'x'",
        "[3, 1, 2]-255",
        256,
        "ff",
        3,
        (1 << 70) // 3 % 1000,
        True,
        True,
        True,
        True,
        2,
    ]


# -- determinism ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        "return str(self)",
        "return repr(self.go)",
        "return f'{(lambda: 0)}'",
        "return f'{[self.m]}'",
        "return str(map(abs, [1]))",
        "return repr({'k': [zip([1])]})",
    ],
)
def test_rendering_objects_with_addresses_is_refused(body: str) -> None:
    # their default text holds a memory address: it differs between executors
    out = attack(body, "contract_exception")
    assert "same on every executor" in out.message


def test_error_messages_hold_no_addresses() -> None:
    body = """
    try:
        [1].index(self)
    except ValueError as e:
        self.n = 1
        return [e.args[0], str(e), f'{e}', f'{e!r}', repr([e])]
    """
    ex = make_world(body)
    out = command(ex, HOSTILE_ID, "go")
    assert out.ok, out
    assert all("0x" not in text for text in out.value), out.value
    assert out.value[0] == "<contract.Hostile object> is not in list"
    escaped = attack("[1].index(self)", "contract_exception")
    assert "0x" not in escaped.message


def test_dict_views_cannot_become_sets() -> None:
    # a.keys() | b.keys() is a set ordered by the string hash seed of the process
    out = attack(
        "a = {'x': 1}\nb = {'y': 2}\nreturn list(a.keys() | b.keys())", "contract_exception"
    )
    assert "unsupported operand" in out.message
    ex = make_world("a = {'x': 1, 'y': 2}\nreturn [a.keys(), a.items(), list(a.values())]")
    assert command(ex, HOSTILE_ID, "go").value == [["x", "y"], [["x", 1], ["y", 2]], [1, 2]]


@pytest.mark.parametrize(
    "body",
    [
        "x = 0\nfor i in range(1000):\n    x = x + i * i\nself.n = x",
        "while True:\n    pass",
        "x = [str(i) for i in range(100)]\nreturn ''.join(x)",
        "f(0)",
        "x = 'x' * 10**12",
    ],
)
def test_same_command_same_gas_on_fresh_executors(body: str) -> None:
    helpers = "def f(n):\n    return f(n + 1)\n"
    outcomes = []
    for _ in range(2):
        ex = make_world(body, helpers)
        outcomes.append(command(ex, HOSTILE_ID, "go", gas=300_000))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0].gas_used > 0


def test_loop_gas_grows_linearly() -> None:
    methods = """
    @command
    def loop(self, times: int) -> int:
        x = 0
        for i in range(times):
            x = x + i
        return x
    """
    ex = make_world("pass", methods=methods)
    gas = {n: command(ex, HOSTILE_ID, "loop", times=n).gas_used for n in (0, 1000, 2000, 4000)}
    step = gas[1000] - gas[0]
    assert step > 0
    assert gas[2000] - gas[1000] == step
    assert gas[4000] - gas[2000] == 2 * step


def test_runaway_stops_at_exactly_the_limit() -> None:
    ex = make_world("while True:\n    pass")
    for limit in (1_000, 12_345, 100_000):
        out = command(ex, HOSTILE_ID, "go", gas=limit)
        assert out.error == "out_of_gas" and out.gas_used == limit


def test_deploy_is_deterministic() -> None:
    source = hostile_source("pass").encode()
    first, second = load_source(source), load_source(source)
    assert first.code_hash == second.code_hash
    assert first.methods == second.methods


def test_module_body_cannot_loop_at_deploy() -> None:
    source = hostile_source("pass", helpers="LIMIT = 10 ** 10**9\n")
    with pytest.raises(CodeRejected):
        load_source(source.encode())


# -- comparisons and hashing walk their operands: charged by size ---------------------------
@pytest.mark.parametrize("test", ["s == t", "s < t", "'a' < s >= t", "[s] == [t]"])
def test_comparisons_are_charged_for_their_work(test: str) -> None:
    methods = f"""
    @command
    def work(self, times: int) -> int:
        s = 'x' * 8_000_000
        t = 'x' * 8_000_000
        same = 0
        for i in range(times):
            if {test}:
                same = same + 1
        return same
    """
    ex = make_world("pass", methods=methods)
    one = command(ex, HOSTILE_ID, "work", times=1)
    eleven = command(ex, HOSTILE_ID, "work", times=11)
    assert eleven.gas_used - one.gas_used >= 10 * 8_000_000 // 64


@pytest.mark.parametrize("use", ["d.get(t)", "t in d", "d[t] = 1", "d.setdefault(t, 1)"])
def test_hashing_big_tuple_keys_is_charged(use: str) -> None:
    methods = f"""
    @command
    def work(self, times: int) -> int:
        t = (0,) * 1_000_000
        d = {{}}
        for i in range(times):
            {use}
        return 0
    """
    ex = make_world("pass", methods=methods)
    one = command(ex, HOSTILE_ID, "work", times=1)
    eleven = command(ex, HOSTILE_ID, "work", times=11)
    assert one.ok, one
    assert eleven.gas_used - one.gas_used >= 10 * 1_000_000 // 64


def test_sorting_big_elements_is_charged_for_the_comparisons() -> None:
    methods = """
    @command
    def work(self, times: int) -> int:
        s = 'x' * 1_000_000
        t = 'x' * 999_999 + 'y'
        for i in range(times):
            x = max([s, t, s, t])
        return 0
    """
    ex = make_world("pass", methods=methods)
    one = command(ex, HOSTILE_ID, "work", times=1)
    eleven = command(ex, HOSTILE_ID, "work", times=11)
    assert eleven.gas_used - one.gas_used >= 10 * 3 * 1_000_000 // 64
