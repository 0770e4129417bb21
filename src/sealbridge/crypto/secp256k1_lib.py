"""Loading libsecp256k1 for python-bitcointx, once per process.

python-bitcointx signs and runs the script interpreter through libsecp256k1, which it
loads by path. coincurve (already a dependency) ships that library; this module points
python-bitcointx at coincurve's copy and loads it under a lock, so the protocol code that
uses Bitcoin scripts (``keyrelease.bitcoin``) touches neither the file system nor a lock.
"""

from __future__ import annotations

import glob
import os
import threading

from sealbridge.core.errors import ConfigError

__all__ = ["Secp256k1Unavailable", "load_secp256k1"]

_LOAD_LOCK = threading.Lock()
_LOADED = threading.Event()


class Secp256k1Unavailable(ConfigError):
    """libsecp256k1 could not be found or loaded for python-bitcointx."""

    code = "secp256k1_unavailable"


def _coincurve_library_path() -> str:
    try:
        import coincurve
    except ImportError as exc:
        raise Secp256k1Unavailable(f"coincurve is not installed: {exc}") from exc
    pattern = os.path.join(os.path.dirname(coincurve.__file__), "_libsecp256k1*")
    found = sorted(glob.glob(pattern))
    if not found:
        raise Secp256k1Unavailable(f"coincurve ships no libsecp256k1 (looked for {pattern})")
    return found[0]


def load_secp256k1() -> None:
    """Point python-bitcointx at coincurve's libsecp256k1 and load it (once, thread-safe).

    A path set earlier by someone else is kept. Raises Secp256k1Unavailable on failure.
    """
    if _LOADED.is_set():
        return
    with _LOAD_LOCK:
        if _LOADED.is_set():
            return
        import bitcointx

        if bitcointx.get_custom_secp256k1_path() is None:
            bitcointx.set_custom_secp256k1_path(_coincurve_library_path())
        from bitcointx.core.secp256k1 import get_secp256k1

        try:
            get_secp256k1()
        except (ImportError, OSError, AttributeError) as exc:
            raise Secp256k1Unavailable(f"python-bitcointx cannot load libsecp256k1: {exc}") from exc
        _LOADED.set()
