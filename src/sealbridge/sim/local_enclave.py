"""An enclave program in the simulator's process, called through its encoded boundary.

Theory of operation
-------------------
A simulated node's enclave is local to its host, as on hardware, so its ``CallEnclave``
effects are carried out at once, on the node, never over a simulated link. They still
cross the real boundary: the request is encoded as the ECALL declares it, the handler
of the real ECALL table (:func:`~sealbridge.tee.ecall.get_ecall_table`) decodes and
runs it, and the response is decoded again -- so a simulated host can hand its enclave
nothing a network host could not. A typed refusal inside the enclave becomes the
answer's ``error`` (``"<code>: <message>"``, as the network driver reports it), which
the host cores read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sealbridge.core.effects import CallEnclave, EnclaveAnswer
from sealbridge.core.errors import ConfigError, SealbridgeError
from sealbridge.tee.enclave import RawEcall

__all__ = ["LocalEnclave"]


class LocalEnclave:
    """An ECALL table, answered in process (see the module docstring)."""

    def __init__(self, table: Mapping[str, RawEcall], what: str) -> None:
        self.table = dict(table)
        self.what = what  # "gateway", "worker", ... (named in an unknown ECALL's refusal)

    def answer(self, effect: CallEnclave) -> EnclaveAnswer:
        """Carry out one ``CallEnclave`` effect; its answer, with the effect's tag."""
        spec = effect.ecall
        run = self.table.get(getattr(spec, "name", ""))
        if run is None:
            return EnclaveAnswer(effect.tag, error=f"unknown_ecall: not a {self.what} ECALL")
        try:
            return EnclaveAnswer(
                effect.tag, spec.decode_response(run(spec.encode_request(effect.request)))
            )
        except SealbridgeError as exc:
            return EnclaveAnswer(effect.tag, error=f"{exc.code}: {exc.message}")

    def call(self, spec: Any, request: Any) -> Any:
        """A call outside any core (a node's setup): its response, or a ConfigError."""
        answer = self.answer(CallEnclave("local", spec, request))
        if answer.error:
            raise ConfigError(f"the {self.what} enclave refused: {answer.error}")
        return answer.response
