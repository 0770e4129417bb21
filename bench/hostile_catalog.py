"""The hostile catalog: contract code that tries to get work for free.

Each entry is the body of a command of the ``Hostile`` contract (``HOSTILE``), by name.
The unit tests (``tests/unit/test_vm_hostile.py``) check that each one is stopped with a
typed error and changes nothing; the amplification benchmark (``bench_amplification``)
measures the wall time each one gets per million gas, against a token transfer's.
"""

from __future__ import annotations

import textwrap

# work the interpreter does in C, loops that never end, handlers that try to outlast gas
RUNAWAY: dict[str, str] = {
    "while_true": "while True:\n    pass",
    "counting_loop": "i = 0\nwhile i >= 0:\n    i = i + 1",
    "float_in_range": "x = 0.5 in range(10**18)",
    "range_count": "x = range(10**18).count(0.5)",
    "range_index": "x = range(10**18).index(0.5)",
    "colliding_int_keys": "d = {}\nfor i in range(10**7):\n    d[i * (2**61 - 1)] = i",
    "in_reversed": "x = list(range(10**5))\nwhile True:\n    y = 0.5 in reversed(x)",
    "dict_union": "d = {i: i for i in range(10**4)}\nwhile True:\n    d = d | d",
    "in_dict_values": "d = {i: i for i in range(10**4)}\nwhile True:\n    x = 0.5 in d.values()",
    "big_power": "x = 7 ** (10**9)",
    "regex_backtracking": "x = re.match('(a+)+b', 'a' * 64)",
    "huge_comprehension": "x = [i for i in range(10**12)]",
    "huge_sum": "x = sum(range(10**12))",
    "sort_with_key": "x = sorted([5] * 4_000_000, key=lambda v: -v)",
    "bytes_rebuild": "x = bytes(range(256))\nwhile True:\n    x = bytes(b for b in x)",
    "bytes_find": "b = bytes(10**7)\nwhile True:\n    x = b.find(b'x')",
    "bytes_compare": "b = bytes(10**7)\nc = bytes(10**7)\nwhile True:\n    x = b == c",
    "bulk_allocate": "while True:\n    x = bytes(10**7)",
    "bulk_list": "while True:\n    x = [0] * 10**6",
    "bulk_copy": "b = bytes(10**7)\nwhile True:\n    x = b[1:]",
    "catch_and_continue": "try:\n    while True:\n        pass\nexcept ValueError:\n    pass",
    "finally_writes": "try:\n    while True:\n        pass\nfinally:\n    self.n = 99",
    "finally_loops": "try:\n    while True:\n        pass\nfinally:\n    while True:\n        pass",
}

# allocations past the instance's memory limit
MEMORY_BOMBS: dict[str, str] = {
    "huge_string": "x = 'a' * 10**9",
    "huge_list": "x = [0] * 10**9",
    "huge_bytes": "x = bytes(10**9)",
    "growing_list": "x = []\nwhile True:\n    x.append('y' * 10**6)",
    "nested_lists": "x = [[0] * 10**6 for i in range(10**3)]",
}

# recursion, in Python frames and in C
RECURSION: dict[str, str] = {
    "python_recursion": "f(0)",
    "c_recursion": "x = []\nfor i in range(10**6):\n    x = [x]\ny = repr(x)",
}

HOSTILE = """
from sealbridge.contracts.sdk import ANYONE, Contract, ContractError, Map, Value, command, query
import re

{helpers}


def f(n):
    return f(n + 1)


class Hostile(Contract):
    n = Value(int, default=0)
    items = Value(list, default=[])
    table = Value(dict, default={{}})
    m = Map(bytes, int, default=0)
    blobs = Map(int, str, default="")

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


def hostile_source(body: str, helpers: str = "", methods: str = "") -> str:
    """The Hostile contract whose ``go`` command runs ``body``."""
    return HOSTILE.format(
        body=textwrap.indent(textwrap.dedent(body).strip("\n"), " " * 8),
        helpers=textwrap.dedent(helpers),
        methods=textwrap.indent(textwrap.dedent(methods), " " * 4),
    )


def get_catalog() -> dict[str, str]:
    """Every program of the catalog, by name."""
    return {**RUNAWAY, **MEMORY_BOMBS, **RECURSION}
