"""What bench/gpu/device_bench.sh needs on a lent GPU machine, which has no package registry, packed into .gpu/bench/
(git-ignored) within the 64 MiB that travels with the working tree.

    python -m bench.gpu.pack            # ~3 min on 2 cores; then run device_bench.sh with carry [".gpu/bench"]

What it packs:
- onnxruntime-gpu for Python 3.12 (the machine's python3), from the wheel this command downloads:
      python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
          --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d ~/.cache/facemask-gpu \\
          onnxruntime-gpu==1.31.1
  The wheel is 256 MB, 4x what travels. Its CUDA 13 / cuDNN 9 runtime libraries (the [cuda,cudnn] extra's
  nvidia-* wheels, over 1 GB) are not packed: the machine's image has them, from its PyTorch (cu130). Three cuts
  bring the rest to about 20 MB (xz): libonnxruntime.so (the C API library; Python loads its own copy in
  onnxruntime_pybind11_state) is left out; in libonnxruntime_providers_cuda.so (284 MB, of which 218 MB are GPU
  kernels for sm_75 to sm_120) the kernels of other GPUs than the H100/H200 (sm_90) are zeroed; and so are, by
  default, the sm_90 kernels of the contributed operators these two networks never use (attention, MoE,
  FlashAttention, quantised GEMMs: each compilation unit's kernel names are read, and one with a kernel of the core
  CUDA operators is kept whole). Zeroed kernels keep their headers, so the library loads and its size is unchanged;
  a zeroed kernel that did run would fail with a CUDA error, never compute quietly. --keep-all-kernels keeps every
  sm_90 kernel (about 61 MB: it would need two calls, see device_bench.sh).
- flask, werkzeug, itsdangerous, blinker, gunicorn and norfair-enough as wheels (the image lacks them, or may hold
  a werkzeug older than flask needs; the classification service runs there with gunicorn's gthread worker, so no
  gevent).
- the held-out test photos of the scene set and, as far as the room left allows, of the real-photo set, with their
  annotations, laid out as FACEMASK_DATASETS_DIR expects (bench/gpu/fp16_accuracy.py scores them).
"""
from __future__ import annotations

import argparse
import io
import json
import lzma
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from facemask.core.paths import REAL_PHOTOS_SPLIT_FILE, REPO_ROOT, SCENE_SPLIT_FILE
from facemask.core.settings import Settings
from training.splits import load_split

PACK_DIR = REPO_ROOT / ".gpu" / "bench"
FIRST_DIR = REPO_ROOT / ".gpu" / "bench-first"  # what a first call carries when it all does not fit in one
ORT_GPU = "onnxruntime-gpu==1.31.1"
WHEEL_CACHE = Path.home() / ".cache" / "facemask-gpu"
SERVICE_WHEELS = ("flask==3.1.3", "werkzeug==3.1.8", "itsdangerous==2.2.0", "blinker==1.9.0", "gunicorn==27.0.1",
                  "norfair-enough==2.4.3")
PLATFORM = ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp", "--platform",
            "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64"]
CARRY_LIMIT = 64 * 2**20
KEPT_ARCH = 90  # H100 and H200
FATBIN_MAGIC = 0xBA55ED50
# Kernel-name parts of compilation units the two networks never run (contrib operators, LLM kernels).
UNUSED_KERNELS = (b"contrib", b"flash", b"onnxruntime3llm", b"cutlass")
CORE_KERNELS = b"onnxruntime4cuda"


def download(requirements: list[str], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", *PLATFORM, "-d", str(folder),
                    *requirements], check=True)
    names = [re.split(r"[=<>]", requirement)[0].replace("-", "_").lower() for requirement in requirements]
    return [path for path in sorted(folder.glob("*.whl")) if path.name.split("-")[0].lower() in names]


def _fatbin_section(library: bytes | bytearray) -> tuple[int, int]:
    """(offset, size) of the ELF section .nv_fatbin, where the GPU kernels are."""
    shoff, = struct.unpack_from("<Q", library, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", library, 0x3A)
    sections = [struct.unpack_from("<IIQQQQ", library, shoff + i * shentsize) for i in range(shnum)]
    names_offset = sections[shstrndx][4]
    for name, _, _, _, offset, size in sections:
        end = library.index(b"\0", names_offset + name)
        if library[names_offset + name:end] == b".nv_fatbin":
            return offset, size
    raise ValueError("no .nv_fatbin section: not a CUDA library")


def _kernel_names(payload: bytes, size: int) -> bytes:
    """The mangled symbol names in one compressed (zstd) or plain cubin."""
    if payload[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard

        payload = zstandard.ZstdDecompressor().decompress(payload, max_output_size=size + 4096)
    return b" ".join(re.findall(rb"_Z\w{8,}", payload))


def strip_kernels(library: bytearray, keep_all: bool, section: tuple[int, int] | None = None) -> tuple[int, int]:
    """Zero, in place, the payload of every kernel image not for KEPT_ARCH and, unless keep_all, of the compilation
    units whose kernels are all contrib/LLM ones; (bytes zeroed, compilation units dropped). section: (offset, size)
    of the fat binaries, by default the library's .nv_fatbin section."""
    offset, size = section or _fatbin_section(library)
    position, zeroed, dropped = offset, 0, 0
    while position < offset + size:
        magic, _, header, body = struct.unpack_from("<IHHQ", library, position)
        if magic != FATBIN_MAGIC:
            position += 8
            continue
        entries, entry = [], position + header
        while entry < position + header + body:
            _, _, entry_header, payload, compressed, _, _, _, arch = struct.unpack_from("<HHIQIIHHI", library, entry)
            uncompressed, = struct.unpack_from("<Q", library, entry + 56)
            entries.append((entry + entry_header, payload, compressed, arch, uncompressed))
            entry += entry_header + payload
        drop = False
        if not keep_all:
            names = b" ".join(_kernel_names(bytes(library[start:start + compressed]), uncompressed)
                              for start, _, compressed, arch, uncompressed in entries if arch == KEPT_ARCH)
            drop = CORE_KERNELS not in names and any(part in names for part in UNUSED_KERNELS)
            dropped += drop
        for start, payload, _, arch, _ in entries:
            if drop or arch != KEPT_ARCH:
                library[start:start + payload] = bytes(payload)
                zeroed += payload
        position += header + body
    return zeroed, dropped


def pack_onnxruntime(wheel: Path, target: Path, keep_all: bool) -> Path:
    """onnxruntime/ and its dist-info from the wheel, cut as the module says, as target (tar.xz)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(wheel) as archive, tarfile.open(fileobj=buffer, mode="w") as tar:
        for item in archive.infolist():
            name = item.filename
            if item.is_dir() or "/libonnxruntime.so" in name or "__pycache__" in name:
                continue
            data = archive.read(item)
            if name.endswith("libonnxruntime_providers_cuda.so"):
                library = bytearray(data)
                zeroed, dropped = strip_kernels(library, keep_all)
                print(f"{name}: {zeroed / 1e6:.0f} MB of kernels zeroed, {dropped} compilation units dropped")
                data = bytes(library)
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755 if name.endswith(".so") else 0o644
            tar.addfile(info, io.BytesIO(data))
    if shutil.which("xz"):  # all cores; the lzma module uses one (minutes for these 300 MB)
        subprocess.run(["xz", "-T0", "-6", "-c"], input=buffer.getvalue(), stdout=target.open("wb"), check=True)
    else:
        target.write_bytes(lzma.compress(buffer.getvalue(), preset=6))
    return target


def tree_bytes() -> int:
    """What the working tree sends: tracked files and untracked ones git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                            capture_output=True, check=True).stdout.split(b"\0")
    return sum((REPO_ROOT / name.decode()).stat().st_size for name in listed
               if name and (REPO_ROOT / name.decode()).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def pack_test_photos(target: Path, budget: int) -> dict[str, int]:
    """The test split's photos and annotations of each data set, in split order, until `budget` bytes are used
    (the scene set first: its photos are small)."""
    settings = Settings.from_env()
    packed, used = {}, 0
    for dataset, split_file in ((settings.scenes_dir, SCENE_SPLIT_FILE),
                                (settings.real_photos_dir, REAL_PHOTOS_SPLIT_FILE)):
        images = {path.stem: path for path in (dataset / "images").glob("*")}
        count = 0
        for name in load_split(split_file)["test"]:
            image, annotation = images.get(name), dataset / "annotations" / f"{name}.xml"
            if image is None or not annotation.is_file():
                continue
            size = image.stat().st_size + annotation.stat().st_size
            if used + size > budget:
                break
            for source, folder in ((image, "images"), (annotation, "annotations")):
                destination = target / dataset.name / folder
                destination.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, destination / source.name)
            used, count = used + size, count + 1
        packed[dataset.name] = count
    return packed


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", type=Path, default=None,
                        help=f"an {ORT_GPU} cp312 manylinux wheel (default: download it to {WHEEL_CACHE})")
    parser.add_argument("--keep-all-kernels", action="store_true")
    parser.add_argument("--margin-mb", type=float, default=1.5, help="room left under the 64 MiB")
    args = parser.parse_args(argv)
    for folder in (PACK_DIR, FIRST_DIR):
        shutil.rmtree(folder, ignore_errors=True)
    PACK_DIR.mkdir(parents=True)
    wheel = args.wheel or download([ORT_GPU], WHEEL_CACHE)[0]
    packed = pack_onnxruntime(wheel, PACK_DIR / "onnxruntime-gpu.tar.xz", args.keep_all_kernels)
    with tempfile.TemporaryDirectory() as downloads:
        for path in download(list(SERVICE_WHEELS), Path(downloads)):
            (PACK_DIR / "wheels").mkdir(exist_ok=True)
            shutil.copy2(path, PACK_DIR / "wheels" / path.name)
    margin = int(args.margin_mb * 2**20)
    room = CARRY_LIMIT - tree_bytes() - folder_bytes(PACK_DIR) - margin
    if room < 0:  # two calls: the first carries the archive's head to the machine's /tmp, the second the rest
        FIRST_DIR.mkdir(parents=True)
        data = packed.read_bytes()
        head = CARRY_LIMIT - tree_bytes() - margin
        (FIRST_DIR / "onnxruntime-gpu.tar.xz.part-1").write_bytes(data[:head])
        (PACK_DIR / "onnxruntime-gpu.tar.xz.part-2").write_bytes(data[head:])
        packed.unlink()
        print('two calls: first, carry [".gpu/bench-first"], the command "mkdir -p /tmp/facemask-first && cp '
              '.gpu/bench-first/* /tmp/facemask-first/"; then at once (the machine stays warm 30 s) the usual one')
        room = CARRY_LIMIT - tree_bytes() - folder_bytes(PACK_DIR) - margin
    photos = pack_test_photos(PACK_DIR / "datasets", max(room, 0))
    tree_mb, packed_mb = round(tree_bytes() / 2**20, 1), round(folder_bytes(PACK_DIR) / 2**20, 1)
    summary = {"tree_mb": tree_mb, "packed_mb": packed_mb, "test_photos": photos,
               "total_mb": round(tree_mb + packed_mb, 1)}
    (PACK_DIR / "packed.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))
    if (tree_mb + packed_mb) * 2**20 > CARRY_LIMIT:
        sys.exit(f"error: {tree_mb + packed_mb:.1f} MiB would travel, over the 64 MiB limit")
    return summary


if __name__ == "__main__":
    main()
