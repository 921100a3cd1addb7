"""Re-create example_entrance.webm, the upload page's example video, from the bundled sample photos:

    python sample-images/make_example_video.py

Three seconds at 10 frames/s, 640x448, VP8 (the browser plays it as it is): group_mixed.jpg drifts slowly to the
side, its left half dark for the first second, so three people "walk in" late; then group_worn_wrong.jpg, for the
third class. Small on purpose (a few hundred kB) for the repository.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "example_entrance.webm"
SIZE, FPS, DRIFT = (640, 448), 10, 48


def frames():
    for name, count, late in (("group_mixed.jpg", 18, 8), ("group_worn_wrong.jpg", 12, 0)):
        photo = cv2.imread(str(HERE / name))
        wide = cv2.resize(photo, (SIZE[0] + DRIFT, round(photo.shape[0] * (SIZE[0] + DRIFT) / photo.shape[1])),
                          interpolation=cv2.INTER_AREA)
        top = (wide.shape[0] - SIZE[1]) // 2
        for index in range(count):
            left = round(DRIFT * index / max(1, count - 1))
            frame = np.ascontiguousarray(wide[top:top + SIZE[1], left:left + SIZE[0]])
            if index < late:
                frame[:, :SIZE[0] // 2] //= 8
            yield frame


def main() -> None:
    writer = cv2.VideoWriter(str(OUTPUT), cv2.VideoWriter_fourcc(*"VP80"), FPS, SIZE)
    for frame in frames():
        writer.write(frame)
    writer.release()
    print(f"{OUTPUT.name}: {OUTPUT.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
