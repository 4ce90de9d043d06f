"""Counter-based seeding: every random stream in archlab is derived from explicit integers.

A stream is identified by a tuple of integers, e.g. ``(seed, "batch-order", epoch)``; the same tuple
always gives the same generator, independent of what ran before. This is what makes runs
resumable at any step and variants of a study see identical data order and augmentation draws.
"""

from __future__ import annotations

import hashlib

import torch

__all__ = ["derive_seed", "make_generator"]


def derive_seed(*parts: int | str) -> int:
    """Hash ``parts`` into a 63-bit seed (stable across processes and Python versions)."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") & ((1 << 63) - 1)


def make_generator(*parts: int | str, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``derive_seed(*parts)``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(*parts))
    return gen
