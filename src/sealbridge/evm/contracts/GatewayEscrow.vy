# pragma version ~=0.4.3
"""
@title GatewayEscrow
@notice Gateway-mode cross-chain transfers (InterTrust Lock -> Verify -> Release/Abort):
        ETH is locked on the source chain's escrow, paid out of the destination chain's
        escrow pool when a threshold BLS signature of the gateway committee verifies on
        chain, and either committed into the source pool or refunded.
@dev The same contract runs on every chain. BLS: IETF POP ciphersuite
     BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_ (public key in G1, signature in G2).
     The message is hashed to G2 ON CHAIN (RFC 9380: expand_message_xmd with SHA-256,
     hash_to_field by MODEXP, MAP_FP2_TO_G2 twice, G2ADD) and the signature is checked
     with one PAIRING_CHECK: e(pk, H(m)) * e(-G1, sig) == 1. EIP-2537 (Prague) encodings:
     Fp = 64 bytes (16 zero bytes + 48 big-endian), G1 = x || y (128 bytes),
     G2 = x.c0 || x.c1 || y.c0 || y.c1 (256 bytes).

     Source chain, per transfer id: NONE -> LOCKED -> COMMITTED (committee commit: the
     release happened) or REFUNDED (committee abort at any time, or anyone after the
     deadline). Destination chain: NONE -> RELEASED (committee release signature, only
     while block.timestamp + release_margin <= the lock's deadline).
     Value: balance >= pool + locked_total (equal unless ETH was forced in).
"""

# ------------------------------------------------------------------ precompiles
MODEXP: constant(address) = 0x0000000000000000000000000000000000000005
G1MSM: constant(address) = 0x000000000000000000000000000000000000000C
G2ADD: constant(address) = 0x000000000000000000000000000000000000000d
PAIRING_CHECK: constant(address) = 0x000000000000000000000000000000000000000F
MAP_FP2_TO_G2: constant(address) = 0x0000000000000000000000000000000000000011

# Gas forwarded to each precompile call. A failing EIP-2537 call burns all the gas it is
# given, so the budget is bounded (Prague prices: MODEXP 200, G1MSM k=1 12,000,
# MAP_FP2_TO_G2 23,800, G2ADD 600, PAIRING_CHECK k=2 102,900).
MODEXP_GAS: constant(uint256) = 5_000
G1MSM_GAS: constant(uint256) = 40_000
MAP_GAS: constant(uint256) = 80_000
G2ADD_GAS: constant(uint256) = 5_000
PAIRING_GAS: constant(uint256) = 150_000

MAX_MESSAGE: constant(uint256) = 2048
G1_SIZE: constant(uint256) = 128
G2_SIZE: constant(uint256) = 256

# DST || I2OSP(len(DST), 1) for BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_ (43 bytes)
DST_PRIME: constant(Bytes[44]) = x"424c535f5349475f424c53313233383147325f584d443a5348412d3235365f535357555f524f5f504f505f2b"
# MODEXP input header: base 64 bytes, exponent 1 byte, modulus 64 bytes
MODEXP_HEADER: constant(Bytes[96]) = x"000000000000000000000000000000000000000000000000000000000000004000000000000000000000000000000000000000000000000000000000000000010000000000000000000000000000000000000000000000000000000000000040"
# exponent 1, then p padded to 64 bytes (so the result is already an EIP-2537 Fp)
MODEXP_TAIL: constant(Bytes[65]) = x"01000000000000000000000000000000001a0111ea397fe69a4b1ba7b6434bacd764774b84f38512bf6730d2a0f6b0f6241eabfffeb153ffffb9feffffffffaaab"
# -G1 generator (x, p - y), EIP-2537 encoded
NEG_G1: constant(Bytes[128]) = x"0000000000000000000000000000000017f1d3a73197d7942695638c4fa9ac0fc3688c4f9774b905a14e3a3f171bac586c55e83ff97a1aeffb3af00adb22c6bb00000000000000000000000000000000114d1d6855d545a8aa7d76c8cf2e21f267816aef1db507c96655b9d5caac42364e6f38ba0ecb751bad54dcd6b939c2ca"
# keccak256 of the point at infinity (128 zero bytes)
INFINITY_G1_HASH: constant(bytes32) = 0x012893657d8eb2efad4de0a91bcd0e39ad9837745dec3ea923737ea803fc8e3d

# ------------------------------------------------------------------ domain tags
RELEASE_TAG: constant(bytes32) = keccak256("sealbridge/gateway-escrow/release/v1")
COMMIT_TAG: constant(bytes32) = keccak256("sealbridge/gateway-escrow/commit/v1")
ABORT_TAG: constant(bytes32) = keccak256("sealbridge/gateway-escrow/abort/v1")
KEY_ROTATION_TAG: constant(bytes32) = keccak256("sealbridge/gateway-escrow/key-rotation/v1")
LOCK_TAG: constant(bytes32) = keccak256("sealbridge/gateway-escrow/lock/v1")
TRANSFER_TAG: constant(bytes32) = keccak256("sealbridge/gateway-escrow/transfer/v1")

# lock states
LOCK_NONE: constant(uint8) = 0
LOCK_LOCKED: constant(uint8) = 1
LOCK_COMMITTED: constant(uint8) = 2
LOCK_REFUNDED: constant(uint8) = 3


struct Lock:
    sender: address
    amount: uint256
    deadline: uint256
    lock_ref: bytes32
    state: uint8


event Locked:
    transfer_id: indexed(bytes32)
    sender: indexed(address)
    amount: uint256
    dest_chain_id: uint256
    dest_escrow: address
    recipient: address
    deadline: uint256
    lock_ref: bytes32

event Released:
    transfer_id: indexed(bytes32)
    recipient: indexed(address)
    amount: uint256
    source_chain_id: uint256
    lock_ref: bytes32

event Committed:
    transfer_id: indexed(bytes32)
    amount: uint256
    lock_ref: bytes32

event Refunded:
    transfer_id: indexed(bytes32)
    sender: indexed(address)
    amount: uint256
    aborted: bool

event LiquidityProvided:
    provider: indexed(address)
    amount: uint256

event KeyRotated:
    epoch: indexed(uint256)
    group_key: Bytes[128]


group_key: public(Bytes[128])
key_epoch: public(uint256)
release_margin: public(immutable(uint256))
pool: public(uint256)
locked_total: public(uint256)
locks: HashMap[bytes32, Lock]
released: public(HashMap[bytes32, bool])


@deploy
def __init__(group_key: Bytes[128], margin: uint256):
    assert margin > 0, "release margin must be positive"
    assert self._is_valid_key(group_key), "invalid group key"
    self.group_key = group_key
    self.key_epoch = 1
    release_margin = margin


# ------------------------------------------------------------------ BLS on chain


@internal
@view
def _reduce(wide: Bytes[64]) -> Bytes[64]:
    """A 64-byte big-endian integer mod p, as a padded EIP-2537 Fp element."""
    ok: bool = False
    out: Bytes[64] = b""
    ok, out = raw_call(
        MODEXP,
        concat(MODEXP_HEADER, wide, MODEXP_TAIL),
        max_outsize=64,
        gas=MODEXP_GAS,
        is_static_call=True,
        revert_on_failure=False,
    )
    assert ok and len(out) == 64, "modexp failed"
    return out


@internal
@pure
def _xor(a: bytes32, b: bytes32) -> bytes32:
    return convert(convert(a, uint256) ^ convert(b, uint256), bytes32)


@internal
@view
def _map_to_g2(u: Bytes[128]) -> Bytes[256]:
    ok: bool = False
    out: Bytes[256] = b""
    ok, out = raw_call(
        MAP_FP2_TO_G2, u, max_outsize=256, gas=MAP_GAS, is_static_call=True,
        revert_on_failure=False,
    )
    assert ok and len(out) == 256, "map_fp2_to_g2 failed"
    return out


@internal
@view
def _hash_to_g2(message: Bytes[MAX_MESSAGE]) -> Bytes[256]:
    """RFC 9380 hash_to_curve to G2 (SSWU, random oracle) with the ciphersuite DST."""
    # expand_message_xmd(message, DST, 256): Z_pad || msg || I2OSP(256, 2) || 0x00 || DST'
    b0: bytes32 = sha256(concat(empty(bytes32), empty(bytes32), message, x"010000", DST_PRIME))
    b1: bytes32 = sha256(concat(b0, x"01", DST_PRIME))
    b2: bytes32 = sha256(concat(self._xor(b0, b1), x"02", DST_PRIME))
    b3: bytes32 = sha256(concat(self._xor(b0, b2), x"03", DST_PRIME))
    b4: bytes32 = sha256(concat(self._xor(b0, b3), x"04", DST_PRIME))
    b5: bytes32 = sha256(concat(self._xor(b0, b4), x"05", DST_PRIME))
    b6: bytes32 = sha256(concat(self._xor(b0, b5), x"06", DST_PRIME))
    b7: bytes32 = sha256(concat(self._xor(b0, b6), x"07", DST_PRIME))
    b8: bytes32 = sha256(concat(self._xor(b0, b7), x"08", DST_PRIME))
    # hash_to_field: u0 = (c0, c1) from bytes 0..127, u1 from bytes 128..255
    u0: Bytes[128] = concat(self._reduce(concat(b1, b2)), self._reduce(concat(b3, b4)))
    u1: Bytes[128] = concat(self._reduce(concat(b5, b6)), self._reduce(concat(b7, b8)))
    # MAP_FP2_TO_G2 maps and clears the cofactor; clearing is linear, so the sum of the
    # two mapped points equals clear_cofactor(map(u0) + map(u1)) of RFC 9380.
    ok: bool = False
    out: Bytes[256] = b""
    ok, out = raw_call(
        G2ADD,
        concat(self._map_to_g2(u0), self._map_to_g2(u1)),
        max_outsize=256,
        gas=G2ADD_GAS,
        is_static_call=True,
        revert_on_failure=False,
    )
    assert ok and len(out) == 256, "g2add failed"
    return out


@internal
@view
def _verify(key: Bytes[128], message: Bytes[MAX_MESSAGE], signature: Bytes[256]) -> bool:
    """e(key, H(message)) == e(G1, signature), as one PAIRING_CHECK."""
    if len(signature) != G2_SIZE:
        return False
    h: Bytes[256] = self._hash_to_g2(message)
    # a pairing starved of gas would read as a bad signature: refuse to run short instead
    assert msg.gas > PAIRING_GAS + PAIRING_GAS // 63 + 10_000, "out of gas for the pairing"
    ok: bool = False
    out: Bytes[32] = b""
    ok, out = raw_call(
        PAIRING_CHECK,
        concat(key, h, NEG_G1, signature),
        max_outsize=32,
        gas=PAIRING_GAS,
        is_static_call=True,
        revert_on_failure=False,
    )
    if not ok or len(out) != 32:
        return False  # a malformed signature (not on the curve / not in G2)
    return convert(out, uint256) == 1


@internal
@view
def _is_valid_key(key: Bytes[128]) -> bool:
    """A G1 point in the subgroup and not the identity (G1MSM by 1 checks both curve and
    subgroup, and returns the point itself)."""
    if len(key) != G1_SIZE or keccak256(key) == INFINITY_G1_HASH:
        return False
    ok: bool = False
    out: Bytes[128] = b""
    ok, out = raw_call(
        G1MSM,
        concat(key, convert(1, bytes32)),
        max_outsize=128,
        gas=G1MSM_GAS,
        is_static_call=True,
        revert_on_failure=False,
    )
    return ok and len(out) == G1_SIZE and keccak256(out) == keccak256(key)


@internal
@view
def _lock_ref(
    source_chain_id: uint256,
    source_escrow: address,
    transfer_id: bytes32,
    sender: address,
    amount: uint256,
    dest_chain_id: uint256,
    dest_escrow: address,
    recipient: address,
    deadline: uint256,
) -> bytes32:
    return keccak256(
        abi_encode(
            LOCK_TAG,
            source_chain_id,
            source_escrow,
            transfer_id,
            sender,
            amount,
            dest_chain_id,
            dest_escrow,
            recipient,
            deadline,
        )
    )


@internal
@view
def _release_message(
    transfer_id: bytes32, recipient: address, amount: uint256, lock_ref: bytes32
) -> Bytes[224]:
    return abi_encode(RELEASE_TAG, chain.id, self, transfer_id, recipient, amount, lock_ref)


# ------------------------------------------------------------------ source chain


@external
@payable
def lock(
    salt: bytes32,
    dest_chain_id: uint256,
    dest_escrow: address,
    recipient: address,
    deadline: uint256,
) -> bytes32:
    """Lock msg.value for `recipient` at `dest_escrow` on chain `dest_chain_id`."""
    assert msg.value > 0, "zero amount"
    assert recipient != empty(address), "empty recipient"
    assert dest_escrow != empty(address), "empty destination escrow"
    assert dest_chain_id != 0, "empty destination chain"
    assert deadline > block.timestamp + release_margin, "deadline too soon"
    transfer_id: bytes32 = keccak256(abi_encode(TRANSFER_TAG, chain.id, self, msg.sender, salt))
    assert self.locks[transfer_id].state == LOCK_NONE, "transfer id already used"
    lock_ref: bytes32 = self._lock_ref(
        chain.id,
        self,
        transfer_id,
        msg.sender,
        msg.value,
        dest_chain_id,
        dest_escrow,
        recipient,
        deadline,
    )
    self.locks[transfer_id] = Lock(
        sender=msg.sender,
        amount=msg.value,
        deadline=deadline,
        lock_ref=lock_ref,
        state=LOCK_LOCKED,
    )
    self.locked_total += msg.value
    log Locked(
        transfer_id=transfer_id,
        sender=msg.sender,
        amount=msg.value,
        dest_chain_id=dest_chain_id,
        dest_escrow=dest_escrow,
        recipient=recipient,
        deadline=deadline,
        lock_ref=lock_ref,
    )
    return transfer_id


@external
def commit(transfer_id: bytes32, signature: Bytes[256]):
    """The committee saw the release on the destination: the lock joins the pool."""
    lk: Lock = self.locks[transfer_id]
    assert lk.state != LOCK_NONE, "unknown transfer"
    assert lk.state == LOCK_LOCKED, "transfer already settled"
    message: Bytes[160] = abi_encode(COMMIT_TAG, chain.id, self, transfer_id, lk.lock_ref)
    assert self._verify(self.group_key, message, signature), "invalid committee signature"
    self.locks[transfer_id].state = LOCK_COMMITTED
    self.locked_total -= lk.amount
    self.pool += lk.amount
    log Committed(transfer_id=transfer_id, amount=lk.amount, lock_ref=lk.lock_ref)


@external
@nonreentrant
def abort(transfer_id: bytes32, signature: Bytes[256]):
    """The committee aborted the transfer: refund the sender now."""
    lk: Lock = self.locks[transfer_id]
    assert lk.state != LOCK_NONE, "unknown transfer"
    assert lk.state == LOCK_LOCKED, "transfer already settled"
    message: Bytes[160] = abi_encode(ABORT_TAG, chain.id, self, transfer_id, lk.lock_ref)
    assert self._verify(self.group_key, message, signature), "invalid committee signature"
    self._refund(transfer_id, lk, True)


@external
@nonreentrant
def refund(transfer_id: bytes32):
    """Anyone, after the deadline, if the transfer was neither committed nor refunded."""
    lk: Lock = self.locks[transfer_id]
    assert lk.state != LOCK_NONE, "unknown transfer"
    assert lk.state == LOCK_LOCKED, "transfer already settled"
    assert block.timestamp > lk.deadline, "deadline not reached"
    self._refund(transfer_id, lk, False)


@internal
def _refund(transfer_id: bytes32, lk: Lock, aborted: bool):
    self.locks[transfer_id].state = LOCK_REFUNDED
    self.locked_total -= lk.amount
    log Refunded(transfer_id=transfer_id, sender=lk.sender, amount=lk.amount, aborted=aborted)
    raw_call(lk.sender, b"", value=lk.amount)


# ------------------------------------------------------------------ destination chain


@external
@payable
def provide_liquidity():
    """Add to the pool releases are paid from."""
    assert msg.value > 0, "zero amount"
    self.pool += msg.value
    log LiquidityProvided(provider=msg.sender, amount=msg.value)


@external
@nonreentrant
def release(
    transfer_id: bytes32,
    recipient: address,
    amount: uint256,
    source_chain_id: uint256,
    source_escrow: address,
    sender: address,
    deadline: uint256,
    signature: Bytes[256],
):
    """Pay `amount` to `recipient` out of the pool for the source lock described by the
    remaining arguments (they are hashed into its lock reference), once, before the
    lock's deadline minus the release margin, if the committee signed the release."""
    assert not self.released[transfer_id], "transfer already released"
    assert recipient != empty(address), "empty recipient"
    assert amount > 0, "zero amount"
    assert block.timestamp + release_margin <= deadline, "release window closed"
    assert amount <= self.pool, "insufficient liquidity"
    lock_ref: bytes32 = self._lock_ref(
        source_chain_id,
        source_escrow,
        transfer_id,
        sender,
        amount,
        chain.id,
        self,
        recipient,
        deadline,
    )
    message: Bytes[224] = self._release_message(transfer_id, recipient, amount, lock_ref)
    assert self._verify(self.group_key, message, signature), "invalid committee signature"
    self.released[transfer_id] = True
    self.pool -= amount
    log Released(
        transfer_id=transfer_id,
        recipient=recipient,
        amount=amount,
        source_chain_id=source_chain_id,
        lock_ref=lock_ref,
    )
    raw_call(recipient, b"", value=amount)


# ------------------------------------------------------------------ committee key


@external
def rotate_key(new_key: Bytes[128], signature: Bytes[256]):
    """Install the next committee key, signed by the current one."""
    assert self._is_valid_key(new_key), "invalid group key"
    epoch: uint256 = self.key_epoch + 1
    message: Bytes[160] = abi_encode(KEY_ROTATION_TAG, chain.id, self, epoch, keccak256(new_key))
    assert self._verify(self.group_key, message, signature), "invalid committee signature"
    self.group_key = new_key
    self.key_epoch = epoch
    log KeyRotated(epoch=epoch, group_key=new_key)


# ------------------------------------------------------------------ views


@external
@view
def hash_to_g2(message: Bytes[MAX_MESSAGE]) -> Bytes[256]:
    """RFC 9380 hash_to_G2 with the ciphersuite DST, EIP-2537 encoded."""
    return self._hash_to_g2(message)


@external
@view
def verify_signature(message: Bytes[MAX_MESSAGE], signature: Bytes[256]) -> bool:
    """Is `signature` the committee's (current key) signature of `message`?"""
    return self._verify(self.group_key, message, signature)


@external
@view
def get_lock(transfer_id: bytes32) -> Lock:
    return self.locks[transfer_id]


@external
@view
def get_release_message(
    transfer_id: bytes32,
    recipient: address,
    amount: uint256,
    source_chain_id: uint256,
    source_escrow: address,
    sender: address,
    deadline: uint256,
) -> Bytes[224]:
    """The exact bytes `release` hashes to G2 for these arguments."""
    lock_ref: bytes32 = self._lock_ref(
        source_chain_id,
        source_escrow,
        transfer_id,
        sender,
        amount,
        chain.id,
        self,
        recipient,
        deadline,
    )
    return self._release_message(transfer_id, recipient, amount, lock_ref)
