"""Reader for the IDX format of MNIST / Fashion-MNIST (http://yann.lecun.com/exdb/mnist/).

An IDX file is: two zero bytes, a type code, the number of dimensions ``d``, ``d``
big-endian uint32 sizes, then the values in C order (big-endian). Files may be gzipped.
"""
from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import DatasetFormatError

__all__ = ['IDXFormatError', 'read_idx', 'IDX_DTYPES']

#: IDX type code -> numpy dtype (big-endian where it matters).
IDX_DTYPES = {
    0x08: np.dtype('u1'),
    0x09: np.dtype('i1'),
    0x0B: np.dtype('>i2'),
    0x0C: np.dtype('>i4'),
    0x0D: np.dtype('>f4'),
    0x0E: np.dtype('>f8'),
}
_GZIP_MAGIC = b'\x1f\x8b'


class IDXFormatError(DatasetFormatError):
    """An IDX file that is corrupt, truncated or not IDX at all."""


def _decompressed_bytes(path: Path) -> bytes:
    with open(path, 'rb') as f:
        raw = f.read()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
        raise IDXFormatError(f'{path}: corrupt or truncated gzip stream ({e}); '
                             'delete the file and get it again') from e


def read_idx(path: str | os.PathLike, expected_ndim: Optional[int] = None) -> np.ndarray:
    """Read an IDX file (plain or gzipped; detected from its content) into a native-endian array.

    Raises :class:`IDXFormatError` naming ``path`` on a bad magic number, an unknown type
    code, a dimension count other than ``expected_ndim``, or a data size that does not
    match the header (truncated file or trailing bytes).
    """
    path = Path(path)
    data = _decompressed_bytes(path)
    if len(data) < 4:
        raise IDXFormatError(f'{path}: too short for an IDX header ({len(data)} bytes)')
    if data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise IDXFormatError(f'{path}: bad IDX magic number 0x{data[:4].hex()} '
                             f'(expected 0x0000TTDD with type code TT in '
                             f'{", ".join(f"{c:02x}" for c in IDX_DTYPES)})')
    dtype, ndim = IDX_DTYPES[data[2]], data[3]
    if ndim == 0 or (expected_ndim is not None and ndim != expected_ndim):
        expected = f'{expected_ndim}' if expected_ndim is not None else 'at least 1'
        raise IDXFormatError(f'{path}: IDX header declares {ndim} dimensions, expected {expected}')
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise IDXFormatError(f'{path}: truncated IDX header ({len(data)} of {header_size} bytes)')
    shape = tuple(int(s) for s in np.frombuffer(data, dtype='>u4', count=ndim, offset=4))
    expected_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found_bytes = len(data) - header_size
    if found_bytes < expected_bytes:
        raise IDXFormatError(f'{path}: truncated IDX file: shape {shape} needs {expected_bytes} bytes of data, '
                             f'found {found_bytes}')
    if found_bytes > expected_bytes:
        raise IDXFormatError(f'{path}: {found_bytes - expected_bytes} unexpected trailing bytes after the '
                             f'IDX data of shape {shape}')
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder('='), copy=True)  # native order, writable
