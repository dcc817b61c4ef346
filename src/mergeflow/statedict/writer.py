"""An incremental safetensors writer: the layout is fixed up front, tensors are written one at a time.

``safetensors.torch.save_file`` needs every tensor at once; a streaming merge produces them key by key. The
format is simple enough to write directly: an 8-byte little-endian header length, a JSON header
``{"__metadata__": {str: str}, key: {"dtype", "shape", "data_offsets": [begin, end]}}`` padded with spaces to
a multiple of 8, then the raw little-endian bytes of every tensor, back to back, in offset order.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from types import TracebackType
from typing import BinaryIO

import torch

from mergeflow.atomic import atomic_path
from mergeflow.errors import MergeflowError
from mergeflow.statedict.lazy import DTYPE_NAMES, all_finite

Layout = Sequence[tuple[str, torch.dtype, tuple[int, ...]]]


class SafetensorsWriter:
    """Write a safetensors file tensor by tensor, atomically (temp file, renamed only if every key was written).

    ``metadata_reserve`` bytes of spaces are kept in the header so metadata known only at the end (EMR's
    rescalers) can still be set with :meth:`set_metadata` before the file is closed.
    """

    def __init__(
        self, path: str | os.PathLike[str], layout: Layout, metadata: Mapping[str, str] | None = None, *, metadata_reserve: int = 0
    ) -> None:
        if sys.byteorder != "little":
            raise MergeflowError("the safetensors writer needs a little-endian machine")
        self.path = path
        self._metadata = dict(metadata or {})
        self._entries: dict[str, tuple[torch.dtype, tuple[int, ...], int, int]] = {}
        offset = 0
        for key, dtype, shape in layout:
            if key in self._entries:
                raise MergeflowError(f"duplicate output key {key!r}")
            if dtype not in DTYPE_NAMES:
                raise MergeflowError(f"cannot write {key!r}: dtype {dtype} has no safetensors name")
            count = 1
            for size in shape:
                count *= int(size)
            nbytes = count * torch.empty((), dtype=dtype).element_size()
            self._entries[key] = (dtype, tuple(int(size) for size in shape), offset, offset + nbytes)
            offset += nbytes
        self._header_size = len(self._header_bytes()) + metadata_reserve
        self._header_size += (-self._header_size) % 8
        self._written: set[str] = set()
        self._stack = ExitStack()
        self._file: BinaryIO | None = None

    def _header_bytes(self) -> bytes:
        header: dict[str, object] = {}
        if self._metadata:
            header["__metadata__"] = self._metadata
        for key, (dtype, shape, begin, end) in self._entries.items():
            header[key] = {"dtype": DTYPE_NAMES[dtype], "shape": list(shape), "data_offsets": [begin, end]}
        return json.dumps(header, separators=(",", ":")).encode("utf-8")

    def __enter__(self) -> SafetensorsWriter:
        tmp = self._stack.enter_context(atomic_path(self.path))
        self._file = self._stack.enter_context(open(tmp, "wb"))
        self._file.write(b"\0" * (8 + self._header_size))
        return self

    def set_metadata(self, metadata: Mapping[str, str]) -> None:
        """Replace the metadata; must fit in the space reserved when the writer was created."""
        self._metadata = dict(metadata)

    def write(self, key: str, tensor: torch.Tensor) -> None:
        """Write one tensor (any order); it must match the layout's dtype and shape and be finite."""
        if self._file is None:
            raise MergeflowError("the writer is not open: use it in a with block")
        if key not in self._entries:
            raise MergeflowError(f"output key {key!r} is not in the layout")
        dtype, shape, begin, end = self._entries[key]
        if tensor.dtype != dtype or tuple(tensor.shape) != shape:
            raise MergeflowError(f"output {key!r}: got {tensor.dtype} {tuple(tensor.shape)}, the layout says {dtype} {shape}")
        if not all_finite(tensor):
            raise MergeflowError(f"merged entry {key!r} contains NaN or Inf (overflow in {dtype}?)")
        data = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
        self._file.seek(8 + self._header_size + begin)
        self._file.write(data.data)  # the array's own memoryview: no copy
        self._written.add(key)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        if kind is not None or self._file is None:
            self._stack.__exit__(kind, error, trace)  # the temp file is removed, the target left untouched
            return
        with self._stack:
            missing = [key for key in self._entries if key not in self._written]
            if missing:
                raise MergeflowError(f"internal error: output keys never written: {missing[:5]}")
            header = self._header_bytes()
            if len(header) > self._header_size:
                raise MergeflowError("internal error: the metadata outgrew the space reserved for it")
            self._file.seek(0)
            self._file.write(struct.pack("<Q", self._header_size))
            self._file.write(header + b" " * (self._header_size - len(header)))
