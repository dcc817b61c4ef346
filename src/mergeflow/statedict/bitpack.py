"""Bit-packed boolean masks: 1 bit per parameter, so a mask bank of T tasks costs T/8 bytes per parameter, not T."""

from __future__ import annotations

import torch

from mergeflow.errors import MergeflowError

# Bit i of each byte (most significant first, as numpy.packbits) holds element 8*j + i.
_WEIGHTS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def packed_size(numel: int) -> int:
    """Bytes needed for ``numel`` mask bits."""
    return (numel + 7) // 8


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """A bool tensor of any shape to a 1-D uint8 tensor of ceil(numel / 8) bytes (zero-padded at the end)."""
    if mask.dtype != torch.bool:
        raise MergeflowError(f"pack_bits expects a torch.bool tensor, got {mask.dtype}")
    flat = mask.detach().reshape(-1).cpu()
    padding = (-flat.numel()) % 8
    if padding:
        flat = torch.cat([flat, flat.new_zeros(padding)])
    bits = flat.view(-1, 8).to(torch.uint8)
    return (bits * _WEIGHTS).sum(dim=1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, shape: torch.Size | tuple[int, ...] | list[int]) -> torch.Tensor:
    """The inverse of :func:`pack_bits`: the bool tensor of ``shape`` the bytes were packed from."""
    return unpack_bits_as(packed, shape, torch.bool)


_SHIFTS = torch.tensor([7, 6, 5, 4, 3, 2, 1, 0], dtype=torch.uint8)


def unpack_bits_as(packed: torch.Tensor, shape: torch.Size | tuple[int, ...] | list[int], dtype: torch.dtype) -> torch.Tensor:
    """The packed mask as 0/1 values of ``dtype`` (torch.bool gives the mask itself), unpacked by integer shifts.

    Why a float result: multiplying by a 0/1 float tensor masks several times faster than a bool mask on CPU (bool
    kernels are the slow ones), which matters when a routed server rebuilds a task's weights for every batch. A
    value masked this way becomes -0 where it was negative (it adds to theta_0 exactly like +0)."""
    shape = tuple(int(size) for size in shape)
    numel = 1
    for size in shape:
        numel *= size
    if packed.dtype != torch.uint8 or packed.ndim != 1 or packed.numel() != packed_size(numel):
        raise MergeflowError(
            f"packed mask has dtype {packed.dtype} and shape {tuple(packed.shape)}; "
            f"expected uint8 of ({packed_size(numel)},) for shape {shape}"
        )
    bits = (packed.unsqueeze(1) >> _SHIFTS.to(packed.device)).bitwise_and_(1)
    return bits.reshape(-1)[:numel].reshape(shape).to(dtype)
