"""Re-create the bundled sample images from the photo and mask textures that ship in the insightface wheel.

    pip install insightface && python sample-images/make_samples.py

Masks are drawn onto chosen faces by warping a mask texture onto the lower face, placed with the project's own
RetinaFace landmarks. See README.md in this folder for origin and licence.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from facemask.core.detector import RetinaFaceDetector  # noqa: E402
from facemask.core.images import decode_image, encode_jpeg  # noqa: E402

HERE = Path(__file__).resolve().parent


def insightface_images() -> Path:
    import insightface

    return Path(insightface.__file__).parent / "data" / "images"


def paste_mask(image: np.ndarray, landmarks: np.ndarray, box: np.ndarray, texture: np.ndarray) -> None:
    """Warp a rectangular mask texture onto the nose-to-chin quadrilateral of one face, in place."""
    left_eye, right_eye, nose, mouth_left, mouth_right = landmarks.astype(np.float32)
    eyes, mouth = (left_eye + right_eye) / 2, (mouth_left + mouth_right) / 2
    across = (right_eye - left_eye) / max(1e-3, np.linalg.norm(right_eye - left_eye))
    down = np.array([-across[1], across[0]], dtype=np.float32)
    face_width = float(box[2] - box[0])
    eye_to_mouth = float(np.dot(mouth - eyes, down))
    top = eyes + down * 0.45 * float(np.dot(nose - eyes, down)) + across * float(np.dot(nose - eyes, across)) * 0.5
    chin = mouth + down * 0.62 * eye_to_mouth
    quad = np.float32([top - across * 0.47 * face_width, top + across * 0.47 * face_width,
                       chin + across * 0.33 * face_width, chin - across * 0.33 * face_width])
    th, tw = texture.shape[:2]
    source = np.float32([[0, 0], [tw, 0], [tw, th], [0, th]])
    matrix = cv2.getPerspectiveTransform(source, quad)
    size = (image.shape[1], image.shape[0])
    warped = cv2.warpPerspective(texture, matrix, size, flags=cv2.INTER_LINEAR)
    alpha = np.zeros((th, tw), np.float32)
    cv2.ellipse(alpha, (tw // 2, th // 2), (tw // 2 - 2, th // 2 - 2), 0, 0, 360, 1.0, -1)
    alpha[: th // 2] = np.maximum(alpha[: th // 2], 1.0)  # square top edge along the nose bridge
    alpha = cv2.warpPerspective(alpha, matrix, size, flags=cv2.INTER_LINEAR)
    alpha = cv2.GaussianBlur(alpha, (5, 5), 0)[..., None]
    image[:] = (image * (1 - alpha) + warped * alpha).astype(np.uint8)


def main() -> None:
    source = insightface_images()
    photo = decode_image(source / "t1.jpg")
    textures = {name: decode_image(source / f"mask_{name}.jpg") for name in ("blue", "white", "black", "green")}
    detector = RetinaFaceDetector().prepare(long_side=1280)

    def faces_left_to_right(image):
        return sorted(detector.detect(image), key=lambda f: f.box[0])

    labels = {}

    def masked(image, choices):
        """The image with masks drawn on the faces (left to right) whose choice names a texture; the faces'
        centres and true labels are returned for tests/labels.json."""
        image, truth = image.copy(), []
        for face, texture in zip(faces_left_to_right(image), choices):
            if texture:
                paste_mask(image, face.landmarks, face.box, textures[texture])
            centre = [float(face.box[0] + face.box[2]) / 2, float(face.box[1] + face.box[3]) / 2]
            truth.append({"center": centre, "label": "with_mask" if texture else "without_mask"})
        return image, truth

    def scaled(pair, size):
        image, truth = pair
        factor = size[0] / image.shape[1]
        truth = [{**t, "center": [c * factor for c in t["center"]]} for t in truth]
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA), truth

    def dimmed(pair):
        return cv2.convertScaleAbs(pair[0], alpha=0.8, beta=-10), pair[1]

    outputs = {
        # Half the group masked: the everyday mixed case.
        "group_mixed.jpg": masked(photo, ["blue", None, "white", None, "black", None]),
        # Mirrored, darker, most people masked: lighting and layout change.
        "group_mostly_masked_dim.jpg": dimmed(
            masked(photo[:, ::-1].copy(), ["white", "green", None, "blue", "black", "blue"])),
        # A low-resolution frame with faces 40-60 px wide, as from a shop-entrance camera.
        "group_small_faces.jpg": scaled(masked(photo, [None, "black", "blue", None, "white", "blue"]), (560, 388)),
        # The original photo: nobody masked.
        "group_unmasked.jpg": masked(photo, [None] * 6),
    }
    for name, (image, truth) in outputs.items():
        (HERE / name).write_bytes(encode_jpeg(image, quality=90))
        labels[name] = [{"center": [round(c, 1) for c in t["center"]], "label": t["label"]} for t in truth]
        print(f"wrote {HERE / name} {image.shape[1]}x{image.shape[0]}")
    (HERE / "labels.json").write_text(json.dumps(labels, indent=1) + "\n")


if __name__ == "__main__":
    main()
