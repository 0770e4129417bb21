# pragma version ~=0.4.3
"""
@title PriceOracle
@notice USD prices (x 1e8) of assets, pushed by one reporter. Key-release contracts size
    deposits in USD: a chunk of `usd_e8` is `usd_e8 * 10**decimals / price_e8` base
    units. `set_price` (reporter only) stores a price with the block time; `get_price`
    refuses an asset never priced and a price older than the caller's `max_age`, so
    every reader chooses its own freshness bound. The owner (deployer) may replace the
    reporter.
@dev Assets are keyed by keccak256 of the utf-8 asset id, e.g. keccak256("ETH@31337").
    Revert strings: "not owner", "not reporter", "zero address", "zero price",
    "unknown asset", "stale price".
"""


struct Quote:
    price_e8: uint256
    updated_at: uint256


event PriceSet:
    asset: indexed(bytes32)
    price_e8: uint256
    updated_at: uint256

event ReporterSet:
    reporter: indexed(address)


owner: public(address)
reporter: public(address)
quotes: HashMap[bytes32, Quote]


@deploy
def __init__(reporter: address):
    assert reporter != empty(address), "zero address"
    self.owner = msg.sender
    self.reporter = reporter
    log ReporterSet(reporter=reporter)


@external
def set_reporter(reporter: address):
    """Replace the reporter (owner only)."""
    assert msg.sender == self.owner, "not owner"
    assert reporter != empty(address), "zero address"
    self.reporter = reporter
    log ReporterSet(reporter=reporter)


@external
def set_price(asset: bytes32, price_e8: uint256):
    """Store the USD price (x 1e8) of `asset` at the current block time."""
    assert msg.sender == self.reporter, "not reporter"
    assert price_e8 > 0, "zero price"
    self.quotes[asset] = Quote(price_e8=price_e8, updated_at=block.timestamp)
    log PriceSet(asset=asset, price_e8=price_e8, updated_at=block.timestamp)


@external
@view
def get_price(asset: bytes32, max_age: uint256) -> uint256:
    """The price of `asset` if it was set at most `max_age` seconds ago."""
    quote: Quote = self.quotes[asset]
    assert quote.updated_at != 0, "unknown asset"
    assert block.timestamp - quote.updated_at <= max_age, "stale price"
    return quote.price_e8


@external
@view
def latest(asset: bytes32) -> (uint256, uint256):
    """(price_e8, updated_at) of `asset`; zeros if it was never priced."""
    quote: Quote = self.quotes[asset]
    return quote.price_e8, quote.updated_at
