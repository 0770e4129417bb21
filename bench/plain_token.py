"""The plain (public) Vyper token used as the on-chain baseline."""

from __future__ import annotations

from pathlib import Path

from sealbridge.chain.abi import AbiCodec
from sealbridge.evm.adapter import ChainAdapter
from sealbridge.evm.compiler import compile_source

SOURCE_FILE = Path(__file__).resolve().parent / "PlainToken.vy"


class PlainToken:
    """A deployed PlainToken, driven through the same ChainAdapter as sealbridge."""

    def __init__(self, chain: ChainAdapter, address: str) -> None:
        self.chain = chain
        self.address = address
        self.codec = AbiCodec(compile_plain_token_abi())

    @classmethod
    def deploy(cls, chain: ChainAdapter, owner_key: bytes) -> PlainToken:
        compiled = compile_source("PlainToken", SOURCE_FILE.read_text(), evm_version="prague")
        return cls(chain, chain.deploy(owner_key, compiled.bytecode))

    def mint(self, owner_key: bytes, to: str, amount: int) -> None:
        data = self.codec.function("mint").encode_call([to, amount])
        self.chain.transact(owner_key, to=self.address, data=data)

    def encode_transfer(self, to: str, amount: int) -> bytes:
        return self.codec.function("transfer").encode_call([to, amount])

    def send_transfer(self, sender_key: bytes, to: str, amount: int) -> bytes:
        """Sign and send a transfer (gas estimated, like ``send_submit``); return the hash."""
        return self.chain.send_transaction(
            sender_key, to=self.address, data=self.encode_transfer(to, amount)
        )

    def balance_of(self, owner: str) -> int:
        fn = self.codec.function("balanceOf")
        return int(fn.decode_result(self.chain.call(self.address, fn.encode_call([owner])))[0])


def compile_plain_token_abi() -> list[dict[str, object]]:
    compiled = compile_source("PlainToken", SOURCE_FILE.read_text(), evm_version="prague")
    return compiled.abi
