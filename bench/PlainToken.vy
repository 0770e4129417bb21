#pragma version ~=0.4.3
#pragma evm-version prague
"""A minimal plain ERC-20-like token: the public baseline of the sealbridge benchmarks."""

event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256

balanceOf: public(HashMap[address, uint256])
totalSupply: public(uint256)
owner: public(address)


@deploy
def __init__():
    self.owner = msg.sender


@external
def mint(to: address, amount: uint256):
    assert msg.sender == self.owner, "only the owner may mint"
    self.totalSupply += amount
    self.balanceOf[to] += amount
    log Transfer(sender=empty(address), receiver=to, value=amount)


@external
def transfer(to: address, amount: uint256) -> bool:
    self.balanceOf[msg.sender] -= amount
    self.balanceOf[to] += amount
    log Transfer(sender=msg.sender, receiver=to, value=amount)
    return True
