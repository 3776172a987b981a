"""Embedding decisions: the response-cache key of an embed request, and how its texts are batched.

Pure, like every policy: the walk (``interlock.actors.request._embed``) asks, and does the I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import msgspec

from interlock._embeddings import EmbedRequest

_PERSON = b"interlock-embed"  # keeps embed keys apart from chat keys even on equal material
_encode = msgspec.msgpack.Encoder().encode


def embed_cache_key(request: EmbedRequest, task: str) -> str:
    """A stable 64-hex-digit key over the texts, the job or model asked for, the dimensions and the tenant.

    Two tenants never share an entry; the same texts asked of another job or model, or at
    another size, are another entry.
    """
    material = (request.tenant, task, request.model or "", request.model_class or "", request.dimensions,
                request.inputs)  # fmt: skip
    return hashlib.blake2b(_encode(material), digest_size=32, person=_PERSON).hexdigest()


def batches(inputs: Sequence[str], size: int) -> Iterator[tuple[int, Sequence[str]]]:
    """The inputs in consecutive slices of at most ``size`` texts, each with the index of its first."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    for start in range(0, len(inputs), size):
        yield start, inputs[start : start + size]
