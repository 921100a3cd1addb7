"""The GPU measurements' CPU side (issue 38): bench/gpu/pack.py's cut of onnxruntime-gpu's CUDA provider, on fat
binaries built here (kernel images for other GPUs than sm_90 zeroed, and compilation units of contributed operators
only; headers stay); the FLOPs count; bench.gpu_bench's dry run on the CPU provider."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from bench.gpu.pack import FATBIN_MAGIC, KEPT_ARCH, strip_kernels
from bench.gpu_bench import graph_flops, main
from facemask.core.sessions import PROBE_MODEL


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


def test_flops_of_a_graph_are_counted_from_its_shapes(tmp_path):
    model = tmp_path / "probe.onnx"
    model.write_bytes(PROBE_MODEL)  # one 1x1 convolution, one channel in and out, over 8x8
    assert graph_flops(model, {"x": np.ones((1, 1, 8, 8), np.float32)}) == 2 * 8 * 8


@pytest.mark.slow
def test_the_gpu_bench_dry_run_measures_every_part_but_the_streams_on_the_cpu(tmp_path):
    main(["--dry-run", "--parts", "photos", "batching", "models", "--out-dir", str(tmp_path)])
    tables = json.loads((tmp_path / "gpu_bench_dry_run.json").read_text())["tables"]
    photos, = (rows for heading, rows in tables.items() if heading.startswith("Photos/s"))
    assert {row["configuration"] for row in photos} == {"CPU FP32", "CPU FP16"}
    assert all(row["photos/s"] > 0 for row in photos)
    models, = (rows for heading, rows in tables.items() if heading == "Each model alone")
    detector = next(row for row in models if row["model"] == "detector" and row["input"] == "1x3x480x640")
    assert 1.0 < detector["GFLOP per run"] < 2.5
    batching, = (rows for heading, rows in tables.items() if heading.startswith("Detector passes"))
    assert all(row["one at a time ms"] > 0 and row["batched ms"] > 0 for row in batching)
    assert not (tmp_path / "fp16_models").exists()
