# pragma version ~=0.4.3
"""
@title StateAnchor
@notice Freshness anchors for sealed enclave state (key-release vaults). An enclave's
    secp256k1 key signs each new version of its state before the enclave acts on it;
    this contract keeps, per signing key, the newest ``(version, state_hash)`` and takes
    only the next version: ``version == anchored + 1``. Two copies of one enclave state
    (a rolled-back or twin process) can therefore never both anchor the same version,
    and an enclave that reads its own anchor from a state proof knows whether the state
    it holds is the newest.
@dev The signed digest is keccak256(abi_encode(self, chain.id, ANCHOR_TAG, version,
    state_hash)); the signer is recovered from it, so anyone may relay the transaction.
    Storage: ``anchors`` is slot 0, a HashMap[address, Anchor] (version at +0,
    state_hash at +1), read by enclaves through eth_getProof.
    Revert strings: "bad signature", "version must follow the anchored one".
"""

ANCHOR_TAG: constant(bytes32) = keccak256("sealbridge/state-anchor/v1")


struct Anchor:
    version: uint256
    state_hash: bytes32


event Advanced:
    signer: indexed(address)
    version: uint256
    state_hash: bytes32


anchors: public(HashMap[address, Anchor])


@internal
@view
def _recover(digest: bytes32, signature: Bytes[65]) -> address:
    r: bytes32 = extract32(signature, 0)
    s: bytes32 = extract32(signature, 32)
    v: uint256 = convert(slice(signature, 64, 1), uint256)
    if v < 27:
        v += 27
    return ecrecover(digest, v, r, s)


@external
def advance(version: uint256, state_hash: bytes32, signature: Bytes[65]):
    """
    @notice Anchor ``version`` of the signer's state (the next one only).
    """
    assert len(signature) == 65, "bad signature"
    digest: bytes32 = keccak256(abi_encode(self, chain.id, ANCHOR_TAG, version, state_hash))
    signer: address = self._recover(digest, signature)
    assert signer != empty(address), "bad signature"
    assert version == self.anchors[signer].version + 1, "version must follow the anchored one"
    self.anchors[signer] = Anchor(version=version, state_hash=state_hash)
    log Advanced(signer=signer, version=version, state_hash=state_hash)
