"""What one GPU carries (issue 38): photos/s and 12 MP photos, one 640x480 stream, concurrent 25 frames/s streams with
and without the batcher, each model's share of the GPU and its distance from the card's FLOP limit; the CPU provider
of the same machine in the same run as the baseline. bench/gpu/device_bench.sh runs it on a lent GPU machine.

    python -m bench.gpu_bench                              # on a GPU: CPU vs CUDA FP32 vs CUDA FP16, every part
    python -m bench.gpu_bench --dry-run                    # the same code on the CPU provider, small and quick

Parts (--parts):
- photos: the five sample photos and a 12 MP crowd (sample-images/group_small_faces.jpg tiled 6x6, 216 faces) through
  detector + classifier in one process (bench/gpu/inprocess.py), decoded beforehand; photos/s and each model's share
  of the time, for each configuration (CPU FP32, CUDA FP32, CUDA FP16); JPEG decoding is timed apart (it runs on
  the CPU in every configuration). The 12 MP photo's ratio GPU/CPU is the issue's 5x bar.
- streams: 640x480 frames of a pan over a group photo (bench/synthetic_video.py) through the video path as it is
  (VideoAnnotator: detector every 3rd frame, optical flow between, tracks classified by a classification service on
  the same provider over HTTP, frames drawn). One stream as fast as it goes; then N streams on threads of one
  process, each fed at 25 frames/s, every frame processed (none skipped): a stream holds when it ends less than
  HOLD_LAG_S behind its camera. N rises until one does not hold; with the detector shared directly by the
  streams' threads, and through DetectorBatcher (facemask/video/batcher.py). GPU utilisation (nvidia-smi) is
  sampled meanwhile.
- models: each model alone in a loop at the batch the video path gives it (detector: 1 and 16 frames of 640x480;
  classifier: 32 crops), inputs from host memory as the services pass them and, for the copies' cost, already on
  the GPU (I/O binding); ms per run, GPU busy share (nvidia-smi), the FLOPs of one run (the graph's convolutions and
  matrix products, counted from its shapes) per second against the card's tensor-core limit.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from bench.common import REPO_ROOT, RESULTS_DIR, Report, command_line
from bench.gpu.inprocess import Models
from bench.synthetic_video import camera_windows, render
from facemask.core.detector import (
    DETECTOR_MODEL,
    GPU_MAX_BATCH,
    GPU_SHAPE_MULTIPLE,
    PyramidFaceDetector,
    RetinaFaceDetector,
)
from facemask.core.images import decode_image, list_images
from facemask.core.paths import CLASSIFIER_FLOAT32_MODEL, CLASSIFIER_MODEL
from facemask.core.pipeline import ClassifierClient, MaskPipeline
from facemask.core.settings import ORT_PROVIDERS, parse_providers
from facemask.serving.local_server import LocalService
from facemask.video.batcher import DetectorBatcher
from facemask.video.loop import VIDEO_DETECT_OPTIONS, VideoAnnotator
from training.fp16 import convert

SAMPLES = REPO_ROOT / "sample-images"
CROWD = SAMPLES / "group_small_faces.jpg"
STREAM_PHOTO = SAMPLES / "group_mixed.jpg"
FRAME_SIZE = (640, 480)
FPS = 25.0
HOLD_LAG_S = 0.5  # a stream that ends further behind its camera than this does not keep up
# Dense tensor-core limits (TFLOP/s) from NVIDIA's data sheets (SXM parts; the H200 has the H100's compute): TF32 is
# what the CUDA provider's FP32 convolutions use (its use_tf32 default), FP16 the FP16 models'; FP32 the plain cores.
CARD_LIMITS = {"H100": {"FP32": 66.9, "TF32": 494.7, "FP16": 989.4},
               "H200": {"FP32": 66.9, "TF32": 494.7, "FP16": 989.4}}


# ----------------------------------------------------------------------------------------------- the machine
def card_name() -> str:
    try:
        names = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        names = ""
    return names.splitlines()[0] if names else "no GPU"


def card_limits(name: str) -> dict[str, float] | None:
    return next((limits for key, limits in CARD_LIMITS.items() if key in name), None)


class GpuMonitor:
    """nvidia-smi's utilisation (the share of time a kernel ran) sampled every 100 ms while the block runs."""

    def __init__(self):
        self.samples: list[float] = []
        self._process: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> "GpuMonitor":
        if shutil.which("nvidia-smi"):
            self._process = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,"
                                              "nounits", "-lms", "100"], stdout=subprocess.PIPE, text=True)
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        return self

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            try:
                self.samples.append(float(line.strip()))
            except ValueError:
                pass

    def __exit__(self, *exc) -> None:
        if self._process:
            self._process.terminate()
            self._process.wait(timeout=10)

    @property
    def busy(self) -> float | None:
        """Mean utilisation in %, the first and last samples (start-up, wind-down) left out."""
        samples = self.samples[1:-1] or self.samples
        return round(statistics.mean(samples), 1) if samples else None


# ---------------------------------------------------------------------------------------------- configurations
def configurations(providers: tuple[str, ...], fp16_dir: Path, with_fp16: bool) -> list[tuple[str, dict]]:
    """(name, Models.load arguments): the CPU baseline, then the provider asked for in FP32 and FP16."""
    configs: list[tuple[str, dict]] = [("CPU FP32", {"providers": ("cpu",)})]
    if providers != ("cpu",):
        accelerator = providers[0].upper() if providers[0] != "tensorrt" else "TensorRT"
        # The CPU serves the int8 classifier; on the accelerator FP32 and FP16 both start from its float32 source
        # (an int8 graph has no FP16 form), so the two compare like for like.
        configs.append((f"{accelerator} FP32", {"providers": providers, "classifier_model": CLASSIFIER_FLOAT32_MODEL}))
        if with_fp16:
            detector16, classifier16 = convert([DETECTOR_MODEL, CLASSIFIER_FLOAT32_MODEL], fp16_dir)
            configs.append((f"{accelerator} FP16", {"providers": providers, "detector_model": detector16,
                                                    "classifier_model": classifier16}))
    return configs


# -------------------------------------------------------------------------------------------------- photos
def time_photos(models: Models, photos: list[np.ndarray], seconds: float, least: int) -> dict:
    """Photos/s through detector + classifier, and the share of each, over at least `least` rounds of the photos
    or `seconds`, after one round of warm-up (providers plan each input shape on first sight)."""
    pipeline = models.pipeline
    for photo in photos:
        pipeline.process(photo)
    detect_s = classify_s = 0.0
    done, started = 0, time.perf_counter()
    while done < least * len(photos) or time.perf_counter() - started < seconds:
        for photo in photos:
            timing = pipeline.process(photo).timing_ms
            detect_s, classify_s = detect_s + timing["detect"] / 1e3, classify_s + timing["classify"] / 1e3
            done += 1
    total = time.perf_counter() - started
    return {"photos/s": round(done / total, 2), "ms per photo": round(total / done * 1e3, 1),
            "detector share": f"{detect_s / total:.0%}", "classifier share": f"{classify_s / total:.0%}",
            "photos timed": done}


def bench_photos(configs: list[tuple[str, dict]], report: Report, quick: bool, card: str) -> None:
    samples = [decode_image(path) for path in list_images(SAMPLES)]
    crowd = decode_image(CROWD)
    scale = (12e6 / (crowd.shape[0] * crowd.shape[1] * 36)) ** 0.5
    twelve_mp = cv2.resize(np.tile(crowd, (6, 6, 1)), None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    if quick:
        twelve_mp = cv2.resize(twelve_mp, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    encoded = cv2.imencode(".jpg", cv2.cvtColor(twelve_mp, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
    begin = time.perf_counter()
    for _ in range(3):
        cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    decode_ms = (time.perf_counter() - begin) / 3 * 1e3
    rows: list[dict] = []
    baseline: dict[str, float] = {}
    for name, arguments in configs:
        models = Models.load(name=name, **arguments)
        for label, photos, seconds, least in (("sample photos (5)", samples, 2 if quick else 6, 1),
                                              ("12 MP crowd", [twelve_mp], 2 if quick else 8, 1 if quick else 3)):
            row = {"card": card, "configuration": name, "photos": label, **time_photos(models, photos, seconds,
                                                                                       least)}
            baseline.setdefault(label, row["photos/s"])
            row["x CPU"] = round(row["photos/s"] / baseline[label], 2)
            rows.append(row)
        del models
    report.table("Photos/s, detector + classifier in one process", rows,
                 f"Decoded beforehand; decoding the {twelve_mp.shape[1]}x{twelve_mp.shape[0]} JPEG takes "
                 f"{decode_ms:.0f} ms on one CPU core in every configuration. x CPU: photos/s over the CPU provider's "
                 "of the same machine, this run.")
    report.data["photos"] = rows


# ------------------------------------------------------------------------------------------------- streams
def stream_frames(count: int) -> list[np.ndarray]:
    photo = decode_image(STREAM_PHOTO)
    windows = camera_windows(photo.shape[1], photo.shape[0], count, "pan", seed=0, aspect=4 / 3)
    return [render(photo, window, FRAME_SIZE) for window in windows]


def run_stream(pipeline: MaskPipeline, frames: list[np.ndarray], paced: bool, start: threading.Barrier | None,
               result: dict) -> None:
    """One camera: every frame through a VideoAnnotator, fed at FPS when paced; how far behind it ended."""
    annotator = VideoAnnotator(pipeline, FPS)
    if start is not None:
        start.wait()
    began = time.perf_counter()
    finished = 0
    for index, frame in enumerate(frames):
        if paced:
            delay = began + index / FPS - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        finished += len(annotator.push(frame))
    finished += len(annotator.flush())
    ended = time.perf_counter()
    result.update(frames=finished, seconds=ended - began, lag=ended - (began + len(frames) / FPS),
                  detections=annotator.detector_runs, crops=annotator.crops_classified)


def streams_held(count: int, frames: list[np.ndarray], detector: PyramidFaceDetector, url: str,
                 batched: bool) -> dict:
    """`count` paced streams at once; how many kept up, the worst lag, GPU utilisation meanwhile."""
    results: list[dict] = [{} for _ in range(count)]
    start = threading.Barrier(count)
    batcher = DetectorBatcher(detector) if batched else None
    cameras = [batcher.stream_detector(**VIDEO_DETECT_OPTIONS) if batcher else
               detector.with_options(**VIDEO_DETECT_OPTIONS) for _ in range(count)]
    threads = [threading.Thread(target=run_stream, args=(MaskPipeline(camera, ClassifierClient(url, retries=1)),
                                                         frames, True, start, result))
               for camera, result in zip(cameras, results)]
    with GpuMonitor() as monitor:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if batcher:
        batcher.close()
    lags = [result["lag"] for result in results]
    seconds = max(result["seconds"] for result in results)
    return {"streams": count, "held": sum(lag <= HOLD_LAG_S for lag in lags), "worst lag s": round(max(lags), 2),
            "frames/s all": round(sum(r["frames"] for r in results) / seconds, 1),
            "detections/s": round(sum(r["detections"] for r in results) / seconds, 1),
            "crops classified/s": round(sum(r["crops"] for r in results) / seconds, 1),
            "GPU busy %": monitor.busy,
            "frames per detector run": round(batcher.frames_run / max(batcher.batches_run, 1), 1) if batcher else 1}


def bench_streams(configs: list[tuple[str, dict]], report: Report, quick: bool, card: str, ladder: list[int],
                  workers: int) -> None:
    """configs[0] is the CPU baseline, configs[1] the accelerated FP32 (a dry run's second CPU configuration stands
    in for it, the batcher included)."""
    frames = stream_frames(50 if quick else 200)
    single_rows, held_rows = [], []
    for name, arguments in configs[:2]:  # the CPU baseline and FP32 on the provider asked for
        providers = arguments["providers"]
        models = Models.load(name=name, **arguments)
        env = {"FACEMASK_ORT_PROVIDERS": ",".join(providers), "WEB_CONCURRENCY": str(workers),
               "FACEMASK_ORT_THREADS": "0" if providers == ("cpu",) else "1"}
        with LocalService("classification", workers=workers, env=env) as service:
            result: dict = {}
            run_stream(MaskPipeline(models.detector.with_options(**VIDEO_DETECT_OPTIONS),
                                    ClassifierClient(service.url)), frames[:25], False, None, result)  # warm-up
            run_stream(MaskPipeline(models.detector.with_options(**VIDEO_DETECT_OPTIONS),
                                    ClassifierClient(service.url)), frames, False, None, result)
            single_rows.append({"card": card, "configuration": name,
                                "frames/s": round(result["frames"] / result["seconds"], 1)})
            baseline = name == configs[0][0]
            for batched in (False, True):
                if batched and baseline:
                    continue  # on the CPU the batcher runs a batch's frames one by one: nothing to measure
                rungs = [n for n in ladder if n <= 8] if baseline else ladder
                for count in rungs:
                    row = streams_held(count, frames, models.detector, service.url, batched)
                    held_rows.append({"card": card, "configuration": name,
                                      "detector": "DetectorBatcher" if batched else "shared directly", **row})
                    print(held_rows[-1], flush=True)
                    if row["held"] < count:
                        break
        del models
    report.table("One 640x480 stream, every frame, as fast as it goes", single_rows,
                 "The video path as it is: detector every 3rd frame, optical flow between, classification service "
                 "over HTTP on the same provider, frames drawn.")
    report.table(f"Concurrent 640x480 streams fed at {FPS:g} frames/s", held_rows,
                 f"Threads of one process, one VideoAnnotator each, every frame processed; held: streams that ended "
                 f"at most {HOLD_LAG_S} s behind their camera. The ladder stops at the first count not all held. "
                 f"Classification service: {workers} worker(s) on the same provider. detections/s and crops "
                 "classified/s times each model's ms per run (table above) is its share of the GPU's time.")
    report.data["streams"] = {"single": single_rows, "held": held_rows}


# ------------------------------------------------------------------------------------------------ batching
def bench_batching(configs: list[tuple[str, dict]], report: Report, quick: bool, card: str) -> None:
    """The detector's network passes one at a time against batched (GPU_MAX_BATCH at a time), same padding, on the
    12 MP photo's tiles and on 16 stream frames; the two take turns so that a shared machine's load falls on both."""
    crowd = decode_image(CROWD)
    photo = cv2.resize(np.tile(crowd, (6, 6, 1)), (4000, 3000) if not quick else (2000, 1500))
    frames = stream_frames(GPU_MAX_BATCH)
    rounds = 2 if quick else 5
    rows = []
    for name, arguments in configs:
        detector = Models.load(name=name, **arguments).detector
        for multiple in sorted({32, detector.shape_multiple}):
            ways = (detector.batched(1, multiple), detector.batched(GPU_MAX_BATCH, multiple))
            for label, images, options in (("12 MP photo (tiles + pyramid)", [photo], {}),
                                           (f"{GPU_MAX_BATCH} frames 640x480", frames, VIDEO_DETECT_OPTIONS)):
                runs = [way.with_options(**options) for way in ways]
                times: list[list[float]] = [[], []]
                for way in runs:
                    way.detect_batch(images)  # warm-up: each shape planned once
                for _ in range(rounds):
                    for way, timed in zip(runs, times):
                        begin = time.perf_counter()
                        way.detect_batch(images)
                        timed.append(time.perf_counter() - begin)
                alone, batched = (statistics.median(t) * 1e3 for t in times)
                rows.append({"card": card, "configuration": name, "input": label, "padded to": f"{multiple} px",
                             "one at a time ms": round(alone, 1), "batched ms": round(batched, 1),
                             "batched / one at a time": round(batched / alone, 3)})
    report.table(f"Detector passes one at a time or {GPU_MAX_BATCH} per run", rows,
                 "Median of alternating runs; the same faces either way (tests/test_batching.py). The CPU default "
                 "runs one at a time, padded to 32 px; a GPU provider batches, padded to "
                 f"{GPU_SHAPE_MULTIPLE} px.")
    report.data["batching"] = rows


# -------------------------------------------------------------------------------------------------- models
def graph_flops(model_path: Path, feed: dict[str, np.ndarray]) -> float:
    """FLOPs of one run (2 per multiply-add) of the graph's Conv and Gemm/MatMul nodes, their output shapes taken
    from a CPU run of the graph with every such output exposed."""
    import onnx

    model = onnx.load(str(model_path))
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        raise ValueError("count the FP32 model: the FP16 copy has the same FLOPs")
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    counted = [node for node in model.graph.node if node.op_type in ("Conv", "Gemm", "MatMul")]
    existing = {output.name for output in model.graph.output}
    model.graph.output.extend([onnx.ValueInfoProto(name=node.output[0]) for node in counted
                               if node.output[0] not in existing])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    shapes = dict(zip(names, (value.shape for value in session.run(names, feed))))
    flops = 0.0
    for node in counted:
        out = shapes[node.output[0]]
        weight = weights.get(node.input[1])
        if node.op_type == "Conv" and weight is not None:  # weight (Cout, Cin/groups, kh, kw)
            flops += 2.0 * np.prod(out) * np.prod(weight[1:])
        elif weight is not None:  # Gemm / MatMul: out (N, M), inner size K from the weight
            flops += 2.0 * np.prod(out) * (weight[1] if node.op_type == "Gemm" and any(
                a.name == "transB" and a.i == 1 for a in node.attribute) else weight[0])
    return flops


def io_bound_ms(session: ort.InferenceSession, feed: dict[str, np.ndarray], device: str, repeats: int) -> float:
    """ms per run with the input already in device memory and the outputs left there (no copies)."""
    binding = session.io_binding()
    for name, value in feed.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, device, 0))
    for output in session.get_outputs():
        binding.bind_output(output.name, device)
    session.run_with_iobinding(binding)
    begin = time.perf_counter()
    for _ in range(repeats):
        session.run_with_iobinding(binding)
    return (time.perf_counter() - begin) / repeats * 1e3


def bench_models(configs: list[tuple[str, dict]], report: Report, quick: bool, card: str) -> None:
    frame = stream_frames(1)[0]
    blob = RetinaFaceDetector.network_input(frame, 1.0)
    cases = {"detector": (DETECTOR_MODEL, [1, GPU_MAX_BATCH], lambda n: np.repeat(blob, n, axis=0)),
             "classifier": (CLASSIFIER_MODEL, [32], lambda n: np.random.default_rng(0).standard_normal(
                 (n, 3, 96, 96)).astype(np.float32))}
    limits = card_limits(card)
    rows, flops_of = [], {}
    for name, arguments in configs:
        models = Models.load(name=name, **arguments)
        precision = "FP16" if "FP16" in name else ("TF32" if arguments["providers"] != ("cpu",) else "FP32")
        for model, session in (("detector", models.detector.session), ("classifier", models.classifier.session)):
            path, batches, make = cases[model]
            for batch in batches:
                feed = {session.get_inputs()[0].name: make(batch)}
                if (model, batch) not in flops_of:
                    flops_of[model, batch] = graph_flops(path, feed)
                flops = flops_of[model, batch]
                session.run(None, feed)
                repeats = 3 if quick else (20 if arguments["providers"] == ("cpu",) else 200)
                with GpuMonitor() as monitor:
                    begin = time.perf_counter()
                    for _ in range(repeats):
                        session.run(None, feed)
                    ms = (time.perf_counter() - begin) / repeats * 1e3
                on_device = arguments["providers"][0] == "cuda"
                bound = io_bound_ms(session, feed, "cuda", repeats) if on_device else None
                tflops = flops / (ms / 1e3) / 1e12
                limit = (limits or {}).get(precision) if on_device else None
                rows.append({"card": card, "configuration": name, "model": model,
                             "input": "x".join(map(str, feed[session.get_inputs()[0].name].shape)),
                             "GFLOP per run": round(flops / 1e9, 2), "ms per run": round(ms, 3),
                             "ms, input on GPU": round(bound, 3) if bound else "-",
                             "GPU busy %": monitor.busy if on_device else "-",
                             "TFLOP/s": round(tflops, 3), "precision": precision,
                             "% of the card's limit": f"{100 * tflops / limit:.2f}" if limit else "-"})
        del models
    report.table("Each model alone", rows,
                 "ms per run: session.run with numpy in and out, as the services call it; input on GPU: the same "
                 "with I/O binding (no host copies), so the difference is the copies' cost. GPU busy: nvidia-smi's "
                 "share of time a kernel ran. The limit is the card's dense tensor-core rate for the precision "
                 f"(TF32 for the CUDA provider's FP32 convolutions), from NVIDIA's data sheets: {CARD_LIMITS}.")
    report.data["models"] = rows


# ---------------------------------------------------------------------------------------------------- main
def verdict(report: Report) -> None:
    """The issue's two bars, read off the tables above: a 12 MP photo at least 5x the CPU provider's photos/s, and
    at least 16 concurrent 640x480 streams held at 25 frames/s on one card."""
    lines = []
    for row in report.data.get("photos", []):
        if row["photos"] == "12 MP crowd" and not row["configuration"].startswith("CPU"):
            lines.append(f"- 12 MP photo, {row['configuration']}: {row['x CPU']}x the CPU provider (bar: 5x)")
    held = report.data.get("streams", {}).get("held", [])
    for configuration in dict.fromkeys(row["configuration"] for row in held):
        for detector in ("shared directly", "DetectorBatcher"):
            counts = [row["streams"] for row in held if row["configuration"] == configuration
                      and row["detector"] == detector and row["held"] == row["streams"]]
            if any(row["configuration"] == configuration and row["detector"] == detector for row in held):
                lines.append(f"- {configuration}, detector {detector}: {max(counts, default=0)} streams held at "
                             f"{FPS:g} frames/s (bar: 16)")
    if lines:
        report.note("## Against the issue's bars\n\n" + "\n".join(lines))


@contextmanager
def fp16_folder(out_dir: Path):
    folder = out_dir / "fp16_models"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv=None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--providers", type=parse_providers, default=("cuda", "cpu"),
                        help="the accelerated configuration (default cuda,cpu); the CPU baseline always runs")
    parser.add_argument("--parts", nargs="+", choices=("photos", "batching", "models", "streams"),
                        default=["photos", "batching", "models", "streams"])
    parser.add_argument("--ladder", type=int, nargs="+", default=[1, 8, 16, 24, 32, 48, 64, 96],
                        help="stream counts tried in turn")
    parser.add_argument("--classifier-workers", type=int, default=2)
    parser.add_argument("--no-fp16", action="store_true")
    parser.add_argument("--dry-run", action="store_true",
                        help="every part on the CPU provider with small sizes: the code path, not a measurement")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--name", default=None)
    args = parser.parse_args(argv)
    if args.dry_run:
        args.providers, args.ladder = ("cpu",), [1, 2]
    missing = [word for word in args.providers if ORT_PROVIDERS[word] not in ort.get_available_providers()]
    if missing:
        raise SystemExit(f"error: this onnxruntime has no {', '.join(missing)} provider "
                         f"({ort.get_available_providers()}); --dry-run runs the CPU path")
    card = card_name()
    report = Report(args.name or ("gpu_bench_dry_run" if args.dry_run else "gpu_bench"),
                    f"One GPU: {card}" if card != "no GPU" else "GPU bench, dry run on the CPU provider",
                    command_line("bench.gpu_bench", argv), args.out_dir, card=card,
                    providers=",".join(args.providers), cpu_cores=os.cpu_count())
    with fp16_folder(args.out_dir) as folder:
        configs = configurations(args.providers, folder, not args.no_fp16)
        if args.dry_run:  # the FP16 path too, on the CPU
            configs.append(("CPU FP16", {"providers": ("cpu",), **dict(zip(
                ("detector_model", "classifier_model"), convert([DETECTOR_MODEL, CLASSIFIER_FLOAT32_MODEL], folder)))}))
        parts = {"photos": bench_photos, "batching": bench_batching, "models": bench_models}
        for part in args.parts:
            if part == "streams":
                bench_streams(configs, report, args.dry_run, card, args.ladder, args.classifier_workers)
            else:
                parts[part](configs, report, args.dry_run, card)
            report.save()  # after each part: a run cut short still leaves what it measured
    verdict(report)
    report.save()
    return report


if __name__ == "__main__":
    main()
