# pragma version ~=0.4.3
"""
@title HTLC
@notice Hashed timelock contract for ETH: the baseline of trustless cross-chain swaps.
    `lock` holds msg.value for `recipient` under a SHA-256 hashlock until `timelock` (a
    unix time). Before the timelock anyone may `claim` with the preimage, which pays the
    recipient and publishes the preimage (event and storage); from the timelock on anyone
    may `refund`, which pays the sender. Each swap settles once.
    States per swap id: NONE -> LOCKED -> CLAIMED | REFUNDED.
@dev The swap id is keccak256(abi_encode(chain.id, self, sender, recipient, amount,
    hashlock, timelock)); an identical second lock is refused.
"""

STATE_NONE: constant(uint8) = 0
STATE_LOCKED: constant(uint8) = 1
STATE_CLAIMED: constant(uint8) = 2
STATE_REFUNDED: constant(uint8) = 3


struct Swap:
    sender: address
    recipient: address
    amount: uint256
    hashlock: bytes32
    timelock: uint256
    preimage: bytes32
    state: uint8


event Locked:
    swap_id: indexed(bytes32)
    sender: indexed(address)
    recipient: indexed(address)
    amount: uint256
    hashlock: bytes32
    timelock: uint256

event Claimed:
    swap_id: indexed(bytes32)
    recipient: indexed(address)
    amount: uint256
    preimage: bytes32

event Refunded:
    swap_id: indexed(bytes32)
    sender: indexed(address)
    amount: uint256


swaps: HashMap[bytes32, Swap]
locked_total: public(uint256)


@external
@payable
def lock(hashlock: bytes32, recipient: address, timelock: uint256) -> bytes32:
    """Lock msg.value for `recipient` until `timelock` under sha256 hashlock."""
    assert msg.value > 0, "zero amount"
    assert recipient != empty(address), "empty recipient"
    assert timelock > block.timestamp, "timelock not in the future"
    swap_id: bytes32 = keccak256(
        abi_encode(chain.id, self, msg.sender, recipient, msg.value, hashlock, timelock)
    )
    assert self.swaps[swap_id].state == STATE_NONE, "swap already exists"
    self.swaps[swap_id] = Swap(
        sender=msg.sender,
        recipient=recipient,
        amount=msg.value,
        hashlock=hashlock,
        timelock=timelock,
        preimage=empty(bytes32),
        state=STATE_LOCKED,
    )
    self.locked_total += msg.value
    log Locked(
        swap_id=swap_id,
        sender=msg.sender,
        recipient=recipient,
        amount=msg.value,
        hashlock=hashlock,
        timelock=timelock,
    )
    return swap_id


@external
@nonreentrant
def claim(swap_id: bytes32, preimage: bytes32):
    """Pay the recipient if sha256(preimage) is the hashlock, before the timelock."""
    swap: Swap = self.swaps[swap_id]
    assert swap.state != STATE_NONE, "unknown swap"
    assert swap.state == STATE_LOCKED, "swap already settled"
    assert block.timestamp < swap.timelock, "timelock expired"
    assert sha256(preimage) == swap.hashlock, "wrong preimage"
    self.swaps[swap_id].state = STATE_CLAIMED
    self.swaps[swap_id].preimage = preimage
    self.locked_total -= swap.amount
    log Claimed(swap_id=swap_id, recipient=swap.recipient, amount=swap.amount, preimage=preimage)
    raw_call(swap.recipient, b"", value=swap.amount)


@external
@nonreentrant
def refund(swap_id: bytes32):
    """Pay the sender back, from the timelock on, if the swap was not claimed."""
    swap: Swap = self.swaps[swap_id]
    assert swap.state != STATE_NONE, "unknown swap"
    assert swap.state == STATE_LOCKED, "swap already settled"
    assert block.timestamp >= swap.timelock, "timelock not expired"
    self.swaps[swap_id].state = STATE_REFUNDED
    self.locked_total -= swap.amount
    log Refunded(swap_id=swap_id, sender=swap.sender, amount=swap.amount)
    raw_call(swap.sender, b"", value=swap.amount)


@external
@view
def get_swap(swap_id: bytes32) -> Swap:
    return self.swaps[swap_id]
