"""bench/gpu/pack.py's cut of onnxruntime-gpu's CUDA provider (issue 38), on fat binaries built here: kernel images
for other GPUs than sm_90 are zeroed, and so are compilation units of contributed operators only; headers stay."""
from __future__ import annotations

import struct

from bench.gpu.pack import FATBIN_MAGIC, KEPT_ARCH, strip_kernels


def _entry(arch: int, payload: bytes) -> bytes:
    """One kernel image: the 64-byte entry header (kind 2 = ELF, header size, payload size, compressed size, ...,
    arch at byte 28, uncompressed size at byte 56) and its payload."""
    header = struct.pack("<HHIQIIHHI", 2, 0x101, 64, len(payload), len(payload), 0, 0, 0, arch)
    header += bytes(56 - len(header)) + struct.pack("<Q", len(payload))
    return header + payload


def _fatbin(*entries: bytes) -> bytes:
    body = b"".join(entries)
    return struct.pack("<IHHQ", FATBIN_MAGIC, 1, 16, len(body)) + body


def test_other_gpus_and_contrib_only_units_are_zeroed_and_core_units_kept():
    core = b"xx _ZN11onnxruntime4cuda18_BinaryElementWiseIfff xx"
    contrib = b"xx _ZN11onnxruntime7contrib4cuda17AttentionKernelIf xx"
    units = [_fatbin(_entry(80, core), _entry(KEPT_ARCH, core)),
             _fatbin(_entry(KEPT_ARCH, contrib), _entry(120, contrib))]
    library = bytearray(b"ELF-ish prefix" + b"".join(units) + b"suffix")
    section = (len(b"ELF-ish prefix"), len(units[0]) + len(units[1]))
    before = bytes(library)
    zeroed, dropped = strip_kernels(library, keep_all=False, section=section)
    assert len(library) == len(before) and dropped == 1
    assert zeroed == len(core) + 2 * len(contrib)
    assert library.count(core) == 1  # the sm_90 image of the core unit only
    assert contrib not in library
    assert library.count(struct.pack("<I", FATBIN_MAGIC)) == 2  # every header is where it was
    kept_all = bytearray(before)
    assert strip_kernels(kept_all, keep_all=True, section=section) == (len(core) + len(contrib), 0)
    assert kept_all.count(contrib) == 1 and kept_all.count(core) == 1
