"""The public API (facemask.load(), docs/api.md): the documented example runs as written, and importing facemask
and using it needs no web stack."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections import Counter

import numpy as np

import facemask
from facemask.core.images import decode_image
from facemask.core.paths import REPO_ROOT
from facemask.core.results import UNCLASSIFIED, Faces

PHOTO = REPO_ROOT / "sample-images" / "group_mixed.jpg"


def _example() -> str:
    return re.search(r"```python\n(.*?)```", (REPO_ROOT / "docs" / "api.md").read_text(), re.S).group(1)


def test_the_documented_example_runs_and_prints_what_it_says(sample_labels):
    code = _example()
    assert len(code.strip().splitlines()) <= 12
    # Run as written, in a fresh interpreter; then say which web modules it loaded.
    probe = code + "\nimport sys\nprint(sorted(m for m in ('flask', 'gunicorn', 'gevent') if m in sys.modules))\n"
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    truth = Counter(face["label"] for face in sample_labels[PHOTO.name])
    assert ast.literal_eval(lines[-4]) == dict(truth)  # faces.counts, as the comment in the example says
    assert lines[-3] == f"{truth['without_mask']} (3, 4)"
    assert lines[-2].startswith("(886, 1280, 3) ")
    assert lines[-1] == "[]"  # no flask, gunicorn or gevent
    assert len(lines) == sum(truth.values()) + 4


def test_classify_gives_what_the_command_line_writes(classifier_service, tmp_path):
    faces = facemask.load().classify(PHOTO)
    result = subprocess.run([sys.executable, "infer.py", "--is_image", "--in_path", str(PHOTO), "--out_path",
                             str(tmp_path), "--classifier-url", classifier_service.url, "--no-local-classifier"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    written = json.loads((tmp_path / f"{PHOTO.stem}.json").read_text())
    assert faces.to_json() == written["faces"] and faces.counts == written["counts"]


def test_detect_then_classify_chosen_faces(classifier_service):
    masks = facemask.load(classifier_service.url)  # over HTTP this time
    found = masks.detect(PHOTO)
    assert isinstance(found, Faces) and len(found) >= 6 and set(found.label) == {UNCLASSIFIED}
    biggest = found[np.argsort(-(found.boxes[:, 2] - found.boxes[:, 0]))[:2]]
    classified = masks.classify(PHOTO, biggest)
    assert len(classified) == 2 and set(classified.status) == {"classified"}
    assert np.array_equal(classified.boxes, biggest.boxes)
    everyone = masks.classify(PHOTO)
    assert np.array_equal(found.boxes, everyone.boxes)  # the same faces in the same (reading) order
    # the same faces, classified where the detector put them: the same labels as the full run gives them
    for face in classified:
        (same,) = [f for f in everyone if f.box == face.box]
        assert same.label == face.label
    picture, faces = masks.annotate(decode_image(PHOTO))  # an RGB array works as well as a path
    assert picture.shape == (886, 1280, 3) and faces == everyone
