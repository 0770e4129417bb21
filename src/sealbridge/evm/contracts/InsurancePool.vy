# pragma version ~=0.4.3
"""
@title InsurancePool
@notice Sybil bonds and an insurance pool for key-release matching. Deposit-key owners
    post ETH bonds; requesters pay matching fees into the pool. The operator (the
    matcher enclave's address) slashes a misbehaving owner's bond into the pool and
    compensates victims out of the pool, each claim id once. An owner who was never
    slashed leaves in two steps: `request_unbond` starts the clock, and
    `withdraw_bond` pays out once `unbonding_period` seconds have passed since the
    LAST request, so the operator has that long to slash. A withdrawal ends the
    request (the next withdrawal needs a new request and a new wait); posting more
    bond cancels it (the owner stays). The matcher must not rely on a bond whose owner
    has a pending request (`unbond_requested_at` != 0). A slashed owner's remaining
    bond stays locked for good, and it cannot post more.
@dev ETH held = total_bonded + pool (more only if ETH was forced in). Revert strings:
    "not owner", "not operator", "zero address", "zero amount", "bond slashed",
    "no bond", "insufficient bond", "unbond not requested", "unbonding period not over",
    "claim already paid", "pool too small".
"""


event BondPosted:
    owner: indexed(address)
    amount: uint256
    total: uint256

event FeePaid:
    payer: indexed(address)
    request_id: bytes32
    amount: uint256

event Slashed:
    owner: indexed(address)
    amount: uint256
    evidence: bytes32

event Compensated:
    victim: indexed(address)
    amount: uint256
    claim_id: bytes32

event UnbondRequested:
    owner: indexed(address)
    bond: uint256
    available_at: uint256

event BondWithdrawn:
    owner: indexed(address)
    amount: uint256
    remaining: uint256

event OperatorSet:
    operator: indexed(address)


owner: public(address)
operator: public(address)
unbonding_period: public(uint256)
bonds: public(HashMap[address, uint256])
slashed: public(HashMap[address, bool])
unbond_requested_at: public(HashMap[address, uint256])
claim_paid: public(HashMap[bytes32, bool])
pool: public(uint256)
total_bonded: public(uint256)


@deploy
def __init__(operator: address, unbonding_period: uint256):
    assert operator != empty(address), "zero address"
    self.owner = msg.sender
    self.operator = operator
    self.unbonding_period = unbonding_period
    log OperatorSet(operator=operator)


@external
def set_operator(operator: address):
    """Replace the operator (owner only), e.g. after the matcher enclave is re-keyed."""
    assert msg.sender == self.owner, "not owner"
    assert operator != empty(address), "zero address"
    self.operator = operator
    log OperatorSet(operator=operator)


@external
@payable
def post_bond():
    """Add msg.value to the sender's bond (cancels a pending unbond request)."""
    assert msg.value > 0, "zero amount"
    assert not self.slashed[msg.sender], "bond slashed"
    total: uint256 = self.bonds[msg.sender] + msg.value
    self.bonds[msg.sender] = total
    self.total_bonded += msg.value
    self.unbond_requested_at[msg.sender] = 0
    log BondPosted(owner=msg.sender, amount=msg.value, total=total)


@external
@payable
def pay_fee(request_id: bytes32):
    """Pay a matching fee for `request_id` into the pool."""
    assert msg.value > 0, "zero amount"
    self.pool += msg.value
    log FeePaid(payer=msg.sender, request_id=request_id, amount=msg.value)


@external
def slash(bond_owner: address, amount: uint256, evidence: bytes32):
    """Move up to `amount` of `bond_owner`'s bond into the pool and mark it slashed."""
    assert msg.sender == self.operator, "not operator"
    assert amount > 0, "zero amount"
    taken: uint256 = min(amount, self.bonds[bond_owner])
    self.bonds[bond_owner] -= taken
    self.total_bonded -= taken
    self.pool += taken
    self.slashed[bond_owner] = True
    log Slashed(owner=bond_owner, amount=taken, evidence=evidence)


@external
@nonreentrant
def compensate(victim: address, amount: uint256, claim_id: bytes32):
    """Pay `amount` from the pool to `victim`, once per `claim_id`."""
    assert msg.sender == self.operator, "not operator"
    assert victim != empty(address), "zero address"
    assert amount > 0, "zero amount"
    assert not self.claim_paid[claim_id], "claim already paid"
    assert amount <= self.pool, "pool too small"
    self.claim_paid[claim_id] = True
    self.pool -= amount
    log Compensated(victim=victim, amount=amount, claim_id=claim_id)
    raw_call(victim, b"", value=amount)


@external
def request_unbond():
    """Start (or restart) the unbonding clock of the sender's bond."""
    assert not self.slashed[msg.sender], "bond slashed"
    bond: uint256 = self.bonds[msg.sender]
    assert bond > 0, "no bond"
    self.unbond_requested_at[msg.sender] = block.timestamp
    log UnbondRequested(
        owner=msg.sender, bond=bond, available_at=block.timestamp + self.unbonding_period
    )


@external
@nonreentrant
def withdraw_bond(amount: uint256):
    """Pay `amount` of the sender's bond back, `unbonding_period` after its request."""
    assert not self.slashed[msg.sender], "bond slashed"
    assert amount > 0, "zero amount"
    bond: uint256 = self.bonds[msg.sender]
    assert amount <= bond, "insufficient bond"
    requested_at: uint256 = self.unbond_requested_at[msg.sender]
    assert requested_at != 0, "unbond not requested"
    assert block.timestamp >= requested_at + self.unbonding_period, "unbonding period not over"
    self.bonds[msg.sender] = bond - amount
    self.total_bonded -= amount
    self.unbond_requested_at[msg.sender] = 0
    log BondWithdrawn(owner=msg.sender, amount=amount, remaining=bond - amount)
    raw_call(msg.sender, b"", value=amount)
