"""sealbridge: confidential, interoperable smart contracts run in TEEs, ordered by an EVM chain."""

__version__ = "0.1.0"
