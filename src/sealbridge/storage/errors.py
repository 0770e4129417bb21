"""Typed errors of checkpoint storage.

Refusals of a peer's input (``BlobRefused``, ``BadBlobHash``, ``BlobNotFound``) are
:class:`RemoteProtocolError`. A client that cannot get enough confirmations, or the
bytes of a blob, from the storage nodes it was given (``StorageUnavailable``,
``BlobUnavailable``) gets a :class:`LocalProtocolError`: the operation it asked for
cannot be done with those nodes.
"""

from __future__ import annotations

from sealbridge.core.errors import LocalProtocolError, RemoteProtocolError


class BlobRefused(RemoteProtocolError):
    """A blob offered for storage is empty or larger than the node accepts."""

    code = "blob_refused"


class BadBlobHash(RemoteProtocolError):
    """A blob hash is not 32 bytes of hex."""

    code = "bad_blob_hash"


class BlobNotFound(RemoteProtocolError):
    """The node holds no blob with this hash."""

    code = "not_found"


class StorageUnavailable(LocalProtocolError):
    """Fewer storage nodes than the threshold confirmed a blob."""

    code = "storage_unavailable"

    def __init__(self, message: str, *, confirmed: int, needed: int) -> None:
        super().__init__(message)
        self.confirmed = confirmed
        self.needed = needed


class BlobUnavailable(LocalProtocolError):
    """No storage node returned the bytes of a blob."""

    code = "blob_unavailable"
