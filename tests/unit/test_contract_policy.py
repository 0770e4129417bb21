"""Deploy-time refusals of contract source (``policy.check_source``).

Every refusal is a :class:`CodeRejected` naming the offending line. Sources mark that line
with ``# <-`` so the expected number is read from the source itself, never counted by hand.
"""

from __future__ import annotations

import textwrap

import pytest

from sealbridge.contracts.errors import CodeRejected
from sealbridge.contracts.executor import load_program
from sealbridge.contracts.policy import MAX_SOURCE_SIZE, check_source

MARK = "# <-"
HEADER = "from sealbridge.contracts.sdk import ANYONE, Contract, Map, Value, command, query\n"


def module(text: str) -> str:
    """A whole contract module: the SDK import, then ``text``."""
    return HEADER + textwrap.dedent(text)


def in_command(*lines: str) -> str:
    """A module whose one command runs ``lines``."""
    body = "".join(f"        {line}\n" for line in lines)
    return (
        f"{HEADER}\n"
        "class C(Contract):\n"
        "    n = Value(int, default=0)\n"
        "\n"
        "    @command\n"
        "    def go(self) -> int:\n"
        f"{body}"
        "        return 0\n"
    )


def marked_lines(source: str) -> list[int]:
    return [n for n, line in enumerate(source.splitlines(), 1) if MARK in line]


def rejected(source: str | bytes) -> list[tuple[int, str]]:
    data = source.encode() if isinstance(source, str) else source
    with pytest.raises(CodeRejected) as caught:
        check_source(data)
    assert caught.value.code == "code_rejected"
    assert caught.value.problems, "a refusal must say why"
    return caught.value.problems


def assert_refused_at_mark(source: str, *words: str) -> list[tuple[int, str]]:
    """The source is refused, a problem names each marked line, and the reasons of the
    marked lines mention ``words`` (case-insensitive)."""
    marks = marked_lines(source)
    assert marks, "test source has no marked line"
    problems = rejected(source)
    lines = {line for line, _ in problems}
    for mark in marks:
        assert mark in lines, f"line {mark} not reported: {problems}"
    reasons = " ".join(why for line, why in problems if line in marks).lower()
    for word in words:
        assert word.lower() in reasons, f"{word!r} not in {problems}"
    return problems


# -- a good contract compiles -----------------------------------------------------------------
GOOD = module(
    '''
    """A counter."""

    LIMIT = 10
    NAMES = ("a", "b")


    def clamp(x: int, low: int = 0) -> int:
        return max(low, min(x, LIMIT))


    class Counter(Contract):
        count = Value(int, default=0)
        seen = Map(bytes, int, default=0)

        @command
        def bump(self, by: int = 1) -> int:
            try:
                self.count = clamp(self.count + by)
            except (ValueError, TypeError):
                pass
            finally:
                self.seen[self.env.caller] = self.seen[self.env.caller] + 1
            return self.count

        @query(readers=ANYONE)
        def current(self) -> int:
            return self.count
    '''
)


def test_good_contract_compiles() -> None:
    program = load_program(GOOD.encode())
    assert sorted(program.methods) == ["bump", "current"]


# -- imports ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "word"),
    [
        (module("import os  # <-\nclass C(Contract):\n    pass\n"), "import"),
        (module("from os import path  # <-\nclass C(Contract):\n    pass\n"), "import"),
        (
            module("import sealbridge.contracts.sdk  # <-\nclass C(Contract):\n    pass\n"),
            "import",
        ),
        (
            module(
                "from sealbridge.contracts.sdk import Storage  # <-\nclass C(Contract):\n    pass\n"
            ),
            "not part of the sdk",
        ),
        (
            module("from . import sdk  # <-\nclass C(Contract):\n    pass\n"),
            "import",
        ),
        (in_command("import os  # <-"), "import"),
        (in_command("from os import path  # <-"), "import"),
    ],
    ids=[
        "import-os",
        "from-os",
        "import-sdk-module",
        "sdk-private-name",
        "relative",
        "import-in-function",
        "from-import-in-function",
    ],
)
def test_imports_are_refused(source: str, word: str) -> None:
    assert_refused_at_mark(source, word)


# -- reflection, I/O, code execution ----------------------------------------------------------
@pytest.mark.parametrize(
    "line",
    [
        '__import__("os")  # <-',
        'open("/etc/passwd")  # <-',
        'eval("1 + 1")  # <-',
        'exec("x = 1")  # <-',
        'compile("1", "f", "eval")  # <-',
        "globals()  # <-",
        "locals()  # <-",
        "vars(self)  # <-",
        "dir(self)  # <-",
        "type(self)  # <-",
        'getattr(self, "n")  # <-',
        'setattr(self, "n", 1)  # <-',
        "hash(1)  # <-",
        "id(self)  # <-",
        "print(1)  # <-",
        "iter([])  # <-",
        "super()  # <-",
        "object()  # <-",
        "bytearray(4)  # <-",
        "memoryview(b'')  # <-",
        "self.__class__  # <-",
        "self.env.__class__  # <-",
        "().__class__.__subclasses__()  # <-",
        "self._ctx  # <-",
        "self._ctx.executor  # <-",
        "(lambda: 0).__globals__  # <-",
        "self.go.__func__  # <-",
        "g = (x for x in [1])\ng.gi_frame  # <-",
        "g = (x for x in [1])\ng.gi_code  # <-",
        "frame = 0\nframe.f_back  # <-",
        "frame = 0\nframe.f_globals  # <-",
        "code = 0\ncode.co_code  # <-",
        "try:\n    1 // 0\nexcept ZeroDivisionError as e:\n    e.__traceback__.tb_frame  # <-",
        "try:\n    1 // 0\nexcept ZeroDivisionError as e:\n    tb = e\n    tb.tb_frame  # <-",
        "'{0.__class__}'.format(self)  # <-",
        "f = 'x{0}'.format  # <-",
        "f = str.format  # <-",
        "'{n}'.format_map({'n': 1})  # <-",
        "int.mro()  # <-",
    ],
)
def test_reflection_and_escapes_are_refused(line: str) -> None:
    assert_refused_at_mark(in_command(*line.splitlines()))


def test_underscore_names_are_refused_with_their_line() -> None:
    source = in_command("_secret = 1  # <-")
    assert_refused_at_mark(source, "_")


def test_dunder_methods_cannot_be_defined() -> None:
    source = module(
        """
        class C(Contract):
            def __getattribute__(self, name):  # <-
                return 1
        """
    )
    assert_refused_at_mark(source, "__getattribute__")


# -- non-determinism: sets, hashing, state outside storage ------------------------------------
@pytest.mark.parametrize(
    ("line", "word"),
    [
        ("s = {1, 2}  # <-", "set"),
        ("s = set()  # <-", "set"),
        ("s = {x for x in [1, 2]}  # <-", "set"),
        ("s = frozenset()  # <-", "frozenset"),
        ("global cache  # <-", "global"),
    ],
)
def test_sets_and_global_are_refused(line: str, word: str) -> None:
    assert_refused_at_mark(in_command(line), word)


def test_nonlocal_is_refused() -> None:
    source = in_command(
        "x = 0",
        "def inner():",
        "    nonlocal x  # <-",
        "    x = 1",
        "inner()",
    )
    assert_refused_at_mark(source, "nonlocal")


def test_generators_and_async_are_refused() -> None:
    source = module(
        """
        def numbers():
            yield 1  # <-


        def more():
            yield from [1]  # <-


        async def later():  # <-
            return 1


        class C(Contract):
            pass
        """
    )
    assert_refused_at_mark(source, "generators", "async")


# -- exceptions: platform stops must not be swallowed -----------------------------------------
@pytest.mark.parametrize(
    ("handler", "word"),
    [
        ("except:  # <-", "bare"),
        ("except Exception:  # <-", "exception"),
        ("except BaseException:  # <-", "baseexception"),
        ("except RecursionError:  # <-", "recursionerror"),
        ("except (ValueError, Exception):  # <-", "exception"),
        ("except KeyboardInterrupt:  # <-", "keyboardinterrupt"),
    ],
)
def test_broad_handlers_are_refused(handler: str, word: str) -> None:
    source = in_command("try:", "    pass", handler, "    pass")
    assert_refused_at_mark(source, word)


def test_except_star_is_refused() -> None:
    source = in_command("try:  # <-", "    pass", "except* ValueError:", "    pass")
    assert_refused_at_mark(source, "trystar")


@pytest.mark.parametrize("statement", ["return 1", "break", "continue"])
def test_jumping_out_of_finally_is_refused(statement: str) -> None:
    source = in_command(
        "while True:",
        "    try:",
        "        pass",
        "    finally:",
        f"        {statement}  # <-",
    )
    assert_refused_at_mark(source, "finally")


def test_return_in_finally_of_nested_function_is_refused() -> None:
    source = in_command(
        "def f():",
        "    try:",
        "        return 1",
        "    finally:",
        "        return 2  # <-",
        "f()",
    )
    assert_refused_at_mark(source, "finally")


def test_match_statement_is_refused() -> None:
    # class patterns read attributes without the attribute guard (``case C(_ctx=c)``)
    source = in_command("match self:  # <-", "    case C(n=x):", "        pass")
    assert_refused_at_mark(source, "match")


# -- defaults, f-strings, literals ------------------------------------------------------------
@pytest.mark.parametrize(
    "definition",
    [
        "def f(x=[]):  # <-",
        "def f(x={}):  # <-",
        "def f(*, x=[1]):  # <-",
        "def f(x=list()):  # <-",
    ],
)
def test_mutable_defaults_are_refused(definition: str) -> None:
    source = in_command(definition, "    return x")
    assert_refused_at_mark(source, "default")


def test_mutable_lambda_default_is_refused() -> None:
    assert_refused_at_mark(in_command("f = lambda x=[]: x  # <-"), "default")


def test_fstring_format_spec_is_refused() -> None:
    assert_refused_at_mark(in_command("s = f'{self.n:>10}'  # <-"), "format spec")


def test_huge_integer_literal_is_refused() -> None:
    literal = "0x" + "f" * 20_000  # 80000 bits: arithmetic on it would be unbounded
    assert_refused_at_mark(in_command(f"x = {literal}  # <-"), "bits")


# -- module and class shape -------------------------------------------------------------------
def test_two_contract_classes_are_refused() -> None:
    source = module(
        """
        class A(Contract):
            pass


        class B(Contract):
            pass
        """
    )
    problems = rejected(source)
    assert any(line == 0 and "exactly one" in why for line, why in problems), problems


def test_no_contract_class_is_refused() -> None:
    problems = rejected(module("X = 1\n"))
    assert any(line == 0 and "found 0" in why for line, why in problems), problems


@pytest.mark.parametrize(
    "definition",
    [
        "class C(Value):  # <-",
        "class C(Contract, Value):  # <-",
        "class C(Contract, metaclass=Value):  # <-",
    ],
)
def test_class_must_derive_from_contract_only(definition: str) -> None:
    source = module(f"{definition}\n    pass\n")
    assert_refused_at_mark(source, "derive from contract")


def test_decorated_class_is_refused() -> None:
    source = module("@command\nclass C(Contract):  # <-\n    pass\n")
    assert_refused_at_mark(source, "derive from contract")


@pytest.mark.parametrize(
    "statement",
    [
        "cache = {}  # <-",
        "cache = []  # <-",
        "cache = list()  # <-",
        "cache: dict = {}  # <-",
        "a = b = []  # <-",
        "for i in range(3):  # <-\n    pass",
        "print(1)  # <-",
    ],
)
def test_module_level_state_and_code_is_refused(statement: str) -> None:
    source = module(f"{statement}\nclass C(Contract):\n    pass\n")
    assert_refused_at_mark(source)


@pytest.mark.parametrize(
    "statement",
    ["cache = {}  # <-", "log = []  # <-", "x = Value  # <-", "def f(self): pass\ng = f  # <-"],
)
def test_class_attributes_are_storage_or_constants(statement: str) -> None:
    body = "\n".join("    " + line for line in statement.splitlines())
    source = module(f"class C(Contract):\n{body}\n")
    assert_refused_at_mark(source, "class attributes")


def test_nested_class_is_refused() -> None:
    source = in_command("class Inner:  # <-", "    pass")
    assert_refused_at_mark(source, "classes")


# -- whole-source failures --------------------------------------------------------------------
def test_syntax_error_reports_its_line() -> None:
    source = module(
        """
        class C(Contract):
            @command
            def go(self) -> int:
                return (1 +  # <-
        """
    )
    problems = rejected(source)
    assert len(problems) == 1
    line, why = problems[0]
    assert "syntax error" in why
    assert line == marked_lines(source)[0]


def test_indentation_error_reports_its_line() -> None:
    source = HEADER + "class C(Contract):\n    x = 1\n      y = 2  # <-\n"
    problems = rejected(source)
    assert problems[0][0] == marked_lines(source)[0]
    assert "syntax error" in problems[0][1]


def test_non_utf8_source_is_refused() -> None:
    data = HEADER.encode() + b"class C(Contract):\n    x = '\xff\xfe'\n"
    problems = rejected(data)
    assert problems == [(0, problems[0][1])]
    assert "utf-8" in problems[0][1].lower()


def test_too_large_source_is_refused() -> None:
    data = (HEADER + "class C(Contract):\n    pass\n").encode()
    data += b"#" * (MAX_SOURCE_SIZE + 1 - len(data))
    problems = rejected(data)
    assert len(problems) == 1
    assert problems[0][0] == 0
    assert "at most" in problems[0][1]


def test_source_at_the_size_limit_is_accepted() -> None:
    data = (HEADER + "class C(Contract):\n    pass\n").encode()
    data += b"#" * (MAX_SOURCE_SIZE - len(data))
    assert len(data) == MAX_SOURCE_SIZE
    check_source(data)


def test_every_problem_is_reported_at_once_with_its_line() -> None:
    source = module(
        """
        import os  # <-
        cache = {}  # <-


        def helper(x=[]):  # <-
            global cache  # <-
            return hash(x)  # <-


        class C(Contract):
            n = Value(int, default=0)

            @command
            def go(self) -> int:
                s = {1, 2}  # <-
                try:
                    return eval("1")  # <-
                except:  # <-
                    pass
                finally:
                    return self.__class__  # <-
        """
    )
    problems = assert_refused_at_mark(source)
    reported = sorted({line for line, _ in problems})
    assert reported == marked_lines(source)
    assert problems == sorted(problems), "problems are listed in line order"
    message = str(CodeRejected(problems))
    for line in marked_lines(source):
        assert f"line {line}:" in message


# -- deploy-time code is metered too ----------------------------------------------------------
@pytest.mark.parametrize(
    "declaration",
    [
        "n = Value(int, default=sum(range(10**12)))",
        "n = Value(int, default=len([i for i in range(10**12)]))",
        "n = Value(int, default=7 ** (10**9))",
        "n = Value(str, default='x' * 10**12)",
    ],
)
def test_module_body_cannot_run_away_at_deploy(declaration: str) -> None:
    # the module body (declarations, decorators) runs at deploy, in the VM, on fuel
    source = module(f"class C(Contract):\n    {declaration}\n")
    with pytest.raises(CodeRejected) as caught:
        load_program(source.encode())
    why = caught.value.problems[0][1]
    assert any(w in why for w in ("out of gas", "MemoryError", "OverflowError")), why


def test_runaway_decorator_argument_is_stopped_at_deploy() -> None:
    source = module(
        """
        class C(Contract):
            @query(readers=sum(range(10**12)))
            def q(self) -> int:
                return 1
        """
    )
    with pytest.raises(CodeRejected) as caught:
        load_program(source.encode())
    assert "out of gas" in caught.value.problems[0][1]
