"""Lazy safetensors: headers first, one tensor at a time, so merging T experts never holds T models.

Tensors are read with plain file reads into their own memory, not through a memory map of the whole file: a map costs
address space for the whole checkpoint (T experts of ViT-B/32 in float32: 9 x 351 MB mapped at once), which an
address-space limit (RLIMIT_AS, ``ulimit -v``) counts even though the pages are not resident.
"""

from __future__ import annotations

import io
import json
import os
import struct
from collections.abc import Iterator, Mapping
from types import TracebackType

import torch
from safetensors import SafetensorError, safe_open

from mergeflow.errors import MergeflowError

# safetensors' dtype names (the header's "dtype" field) and their torch dtypes.
DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
DTYPE_NAMES: dict[torch.dtype, str] = {dtype: name for name, dtype in DTYPES.items()}


def all_finite(tensor: torch.Tensor) -> bool:
    """No NaN/Inf in ``tensor``. A NaN or Inf entry makes the sum non-finite, so a finite sum (one cheap pass, no
    temporary) proves it; only a non-finite sum (which may also be a harmless overflow) takes the exact check."""
    if not tensor.is_floating_point() or tensor.numel() == 0:
        return True
    return bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())


def _read_bytes(stream: io.FileIO, begin: int, end: int, out: torch.Tensor) -> None:
    """Read file bytes [begin, end) straight into ``out``'s memory (no intermediate copy, no mapping)."""
    view = out.view(-1).view(torch.uint8).numpy().data  # the tensor's own bytes, writable
    stream.seek(begin)
    done = 0
    while done < end - begin:
        count = stream.readinto(view[done:])
        if not count:
            raise OSError(f"the file ends at byte {begin + done}, inside the entry")
        done += count


class LazySafetensors:
    """A safetensors file: keys, shapes and dtypes from the header alone (validated by ``safe_open``), and
    :meth:`get` reads (and NaN/Inf-checks) a single tensor, so the process's memory, resident and mapped, stays at
    the tensors the caller keeps, not the whole file (tensors returned by ``safe_open`` keep every page they touch
    mapped and resident until the file is closed). Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        if os.path.isdir(self.path):
            raise MergeflowError(f"{self.path}: is a directory, not a safetensors file")
        if not os.path.isfile(self.path):
            raise MergeflowError(f"{self.path}: no such file")
        try:
            self._file: io.FileIO | None = None
            self._info: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
            # validates the header and the offsets; "numpy" maps the file once (transiently), "pt" maps it twice
            with safe_open(self.path, framework="numpy") as handle:
                self.keys: list[str] = list(handle.keys())
                self.metadata: dict[str, str] = dict(handle.metadata() or {})
                for key in self.keys:
                    view = handle.get_slice(key)
                    dtype_name = view.get_dtype()
                    if dtype_name not in DTYPES:
                        raise MergeflowError(f"{self.path}: entry {key!r} has unsupported dtype {dtype_name}")
                    self._info[key] = (tuple(int(size) for size in view.get_shape()), DTYPES[dtype_name])
            self._file = open(self.path, "rb", buffering=0)  # closed by close()
            header_size = struct.unpack("<Q", self._file.read(8))[0]
            header = json.loads(self._file.read(header_size))
            self._offsets = {key: (8 + header_size + header[key]["data_offsets"][0], 8 + header_size + header[key]["data_offsets"][1])
                             for key in self.keys}
        except (SafetensorError, OSError, ValueError, KeyError, struct.error) as exc:
            self.close()
            raise MergeflowError(f"{self.path}: not a readable safetensors file ({exc})") from exc

    def shape(self, key: str) -> tuple[int, ...]:
        return self._entry(key)[0]

    def dtype(self, key: str) -> torch.dtype:
        return self._entry(key)[1]

    def numel(self, key: str) -> int:
        count = 1
        for size in self.shape(key):
            count *= size
        return count

    def get(self, key: str, *, check_finite: bool = True) -> torch.Tensor:
        """One tensor, read now; NaN/Inf refused here, as it is read, not in a separate pass."""
        shape, dtype = self._entry(key)
        return self.read_into(key, torch.empty(shape, dtype=dtype), check_finite=check_finite)

    def read_into(self, key: str, out: torch.Tensor, *, check_finite: bool = True) -> torch.Tensor:
        """Read entry ``key`` into ``out`` (contiguous, same dtype and shape; e.g. one row of a preallocated
        stack, which saves a copy)."""
        shape, dtype = self._entry(key)
        if out.dtype != dtype or tuple(out.shape) != shape or not out.is_contiguous():
            raise MergeflowError(f"{self.path}: {key!r} is {dtype} {shape}; cannot read it into {out.dtype} {tuple(out.shape)}")
        if self._file is None:
            raise MergeflowError(f"{self.path}: the file is closed")
        begin, end = self._offsets[key]
        if end > begin:
            try:
                _read_bytes(self._file, begin, end, out)
            except (OSError, ValueError) as exc:
                raise MergeflowError(f"{self.path}: cannot read entry {key!r} ({exc})") from exc
        if check_finite and not all_finite(out):
            raise MergeflowError(f"{self.path}: entry {key!r} contains NaN or Inf")
        return out

    def items(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(key, tensor) in file order, one tensor alive at a time (unless the caller keeps them)."""
        for key in self.keys:
            yield key, self.get(key)

    def _entry(self, key: str) -> tuple[tuple[int, ...], torch.dtype]:
        try:
            return self._info[key]
        except KeyError:
            raise MergeflowError(f"{self.path}: no entry {key!r}") from None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> LazySafetensors:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()


def check_compatible_files(base: LazySafetensors, experts: Mapping[str, LazySafetensors]) -> None:
    """Same keys, shapes and dtypes in the base and every expert, from the headers alone (nothing is read).

    The error names the expert, its file and the first differing key, before any merging work starts.
    """
    if not experts:
        raise MergeflowError("no experts to merge: pass at least one NAME=PATH")
    reference = set(base.keys)
    for name, expert in experts.items():
        where = f"expert {name!r} ({expert.path})"
        missing, extra = sorted(reference - set(expert.keys)), sorted(set(expert.keys) - reference)
        if missing or extra:
            raise MergeflowError(
                f"{where}: keys differ from the base model {base.path} (missing {missing[:5]}, unexpected {extra[:5]})"
            )
        for key in base.keys:
            if expert.shape(key) != base.shape(key):
                raise MergeflowError(f"{where}: {key!r} has shape {expert.shape(key)}, the base model has {base.shape(key)}")
            if expert.dtype(key) != base.dtype(key):
                raise MergeflowError(f"{where}: {key!r} has dtype {expert.dtype(key)}, the base model has {base.dtype(key)}")
