"""Typed errors of the contract platform (deploy checks and execution).

Contract authors raise :class:`~sealbridge.contracts.sdk.ContractError`; everything here is
raised by the platform around them. Each has a short ``code`` that a command's sealed
result carries back to its caller.
"""

from __future__ import annotations

from sealbridge.core.errors import RemoteProtocolError


class Abort(RemoteProtocolError):
    """A command must stop now and fail whole (the contract cannot catch this: inside the
    guest it is a trap). ``code`` names the cause."""

    code = "abort"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class OutOfGas(Abort):
    code = "out_of_gas"


class CallDepthExceeded(Abort):
    code = "call_depth_exceeded"


class TooManyMessages(Abort):
    code = "too_many_messages"


class TooLarge(Abort):
    """A value, result or message is larger than the enclave will carry."""

    code = "too_large"


class ContractFailed(Abort):
    """The contract's own code failed (its error, an exception, a trap in the VM)."""

    def __init__(self, code: str, message: str, line: int = 0) -> None:
        where = f" (contract line {line})" if line else ""
        super().__init__(message + where, code)
        self.line = line


class CodeRejected(RemoteProtocolError):
    """Contract source refused at deploy; ``problems`` lists (line, reason), line 0 when
    the problem is the module as a whole."""

    code = "code_rejected"

    def __init__(self, problems: list[tuple[int, str]]) -> None:
        self.problems = sorted(problems)
        text = "; ".join(f"line {line}: {why}" if line else why for line, why in self.problems)
        super().__init__(f"contract code refused: {text}")


class ExecutionError(RemoteProtocolError):
    """A call that cannot run as asked (before any contract code runs)."""

    code = "execution_error"


class UnknownMethod(ExecutionError):
    code = "unknown_method"


class BadArguments(ExecutionError):
    code = "bad_arguments"


class QueryNotAllowed(ExecutionError):
    """The caller is not among the readers the query declares."""

    code = "not_a_reader"


class UnknownTarget(ExecutionError):
    code = "unknown_contract"


class BadResult(ExecutionError):
    code = "bad_result"


class CallFailed(Abort):
    """A synchronous call failed: the whole call tree is reverted; ``code`` is the
    callee's."""

    def __init__(self, message: str, inner_code: str) -> None:
        super().__init__(message, inner_code)
        self.inner_code = inner_code


class ReentrantCall(Abort):
    """A contract already on the call stack was called again."""

    code = "reentrant_call"


class CrossDomainCall(Abort):
    """A synchronous call to a contract that other workers execute."""

    code = "cross_domain_call"
