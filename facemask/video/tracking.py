"""Faces across video frames: identities (norfair), motion between detections (optical flow), steady labels.

- ``FaceTracker`` gives every face a ``track_id`` that persists while the person is visible. Association and track
  life cycle are norfair's; faces are fed to it every frame, detected or followed, and matched by IoU with where
  optical flow says each track's face is now.
- ``follow_faces`` moves boxes and landmarks from one frame to the next with pyramidal Lucas-Kanade optical flow
  and a robust similarity fit per face, so frames between two detector runs carry current boxes even while the
  camera pans, zooms or shakes.
- ``appearance`` / ``reid_distance`` recognise a person who comes back after their track was lost (left the view
  during a zoom, hidden for longer than the tracker waits), so they are not counted twice.
- ``LabelSmoother`` turns a track's recent classifications into one label that does not flicker: probabilities
  are averaged over a window and the shown label only changes when another class leads by a margin. It is
  generic over the class names the classifier reports (2 or more).
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np

from facemask.core.boxes import centre, clip_to_image, iou, longest_side, shortest_side, widths_heights
from facemask.core.results import Face

if TYPE_CHECKING:
    from norfair import Detection



@dataclass
class TrackedFace(Face):
    """A face in one frame: where it is, how it was found (detected, or followed by optical flow) and its track."""

    detected: bool = True
    track_id: int | None = None

    @property
    def size(self) -> float:
        return shortest_side(self.box)


class FaceTracker:
    """Track ids for faces, one update per frame.

    norfair keeps the tracks (association, birth, death after `max_missing_frames` unseen), and optical flow is
    the motion model: before each update the caller passes where every track's face moved to in this frame
    (`predicted`), and a face matches a track by IoU with that position. A Kalman filter would predict smooth
    motion and lose faces under a shaking camera; flow measures the motion instead. A track without a prediction
    (flow lost it) is matched at its last seen position.
    """

    def __init__(self, max_missing_frames: int = 30, min_iou: float = 0.2):
        # Imported here: norfair brings scipy (about a second of start-up), which the image path never needs.
        from norfair import Detection, Tracker
        from norfair.filter import NoFilterFactory

        self._detection = Detection

        # norfair warns that a per-pair (scalar) distance is slow; with a handful of faces it costs microseconds.
        norfair_log = logging.getLogger("norfair.tracker")
        level = norfair_log.level
        norfair_log.setLevel(logging.ERROR)
        try:
            self.tracker = Tracker(distance_function=self._distance, distance_threshold=1.0 - min_iou,
                                   hit_counter_max=max(2, max_missing_frames), initialization_delay=0,
                                   filter_factory=NoFilterFactory())
        finally:
            norfair_log.setLevel(level)
        self.frame = 0
        self.predicted: dict[int, np.ndarray] = {}

    def _distance(self, detection: Detection, tracked) -> float:
        box = self.predicted.get(tracked.id)
        if box is not None:
            return 1.0 - iou(detection.points.reshape(4), box)
        # A track that flow lost (the face left the view, or was hidden) is matched by where it was last seen,
        # which may be far off by now: allow a centre within ~1.5 face sizes and a similar size instead of overlap.
        last, new = tracked.last_detection.points.reshape(4), detection.points.reshape(4)
        size_last, size_new = longest_side(last), longest_side(new)
        if not 0.6 <= size_new / max(size_last, 1e-6) <= 1.6:
            return 1.0
        offset = np.hypot(*(centre(new) - centre(last))) / max(size_new, 1e-6)
        return float(min(1.0, offset / 2.0))

    def update(self, faces: list[TrackedFace], predicted: dict[int, np.ndarray] | None = None) -> None:
        """Set track_id on every face (None only if the tracker did not take it, which norfair does not do with
        initialization_delay=0)."""
        self.frame += 1
        self.predicted = predicted or {}
        detections = [self._detection(points=face.box.reshape(2, 2).astype(np.float64),
                                      scores=np.full(2, face.det_score), data=(self.frame, index))
                       for index, face in enumerate(faces)]
        for face in faces:
            face.track_id = None
        for tracked in self.tracker.update(detections=detections):
            frame, index = tracked.last_detection.data
            if frame == self.frame and tracked.id is not None:  # matched now, not coasting on an older detection
                faces[index].track_id = int(tracked.id)


def appearance(crop_rgb: np.ndarray) -> np.ndarray:
    """Hue-saturation histogram of a face crop: a signature that survives changes of scale and position and costs
    microseconds, enough to tell apart the few people who leave and come back at the same place within seconds."""
    hsv = cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2HSV)
    histogram = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256])
    return cv2.normalize(histogram, histogram).flatten()


def restored_box(box: np.ndarray, full_size: np.ndarray, width: int, height: int) -> np.ndarray:
    """A box that optical flow clipped to the frame as its face left the view, grown back to the face's full size
    on the side beyond the frame edge: where the face is, not the sliver that was still visible."""
    box = np.asarray(box, dtype=np.float32).copy()
    grow_w, grow_h = full_size - widths_heights(box)
    if grow_w > 0:
        if box[0] <= 1:
            box[0] -= grow_w
        elif box[2] >= width - 1:
            box[2] += grow_w
    if grow_h > 0:
        if box[1] <= 1:
            box[1] -= grow_h
        elif box[3] >= height - 1:
            box[3] += grow_h
    return box


def reid_distance(new_box: np.ndarray, lost_box: np.ndarray, max_offset: float, max_size_ratio: float) -> float | None:
    """How far a new face is from where a lost track was last seen, in face sizes; None when it is too far or of
    too different a size to be the same person."""
    size_new, size_lost = max(longest_side(new_box), 1e-6), max(longest_side(lost_box), 1e-6)
    if max(size_new / size_lost, size_lost / size_new) > max_size_ratio:
        return None
    offset = float(np.hypot(*(centre(new_box) - centre(lost_box)))) / size_lost
    return offset if offset <= max_offset else None


def to_gray(image_rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)


def _face_points(face: TrackedFace) -> np.ndarray:
    """Landmarks plus a 3x3 grid over the inner box: enough texture for a robust fit even with a mask on."""
    x1, y1, x2, y2 = face.box
    xs = np.linspace(x1 + 0.2 * (x2 - x1), x2 - 0.2 * (x2 - x1), 3)
    ys = np.linspace(y1 + 0.2 * (y2 - y1), y2 - 0.2 * (y2 - y1), 3)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    return np.concatenate([face.landmarks.reshape(5, 2), grid]).astype(np.float32)


def _apply(face: TrackedFace, matrix: np.ndarray, width: int, height: int) -> TrackedFace | None:
    """The face moved by a 2x3 similarity; None when it left the frame."""
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    half = widths_heights(face.box) / 2 * scale
    new_centre = matrix[:, :2] @ centre(face.box) + matrix[:, 2]
    box = np.concatenate([new_centre - half, new_centre + half])
    if box[2] <= 1 or box[3] <= 1 or box[0] >= width - 1 or box[1] >= height - 1:
        return None
    box = clip_to_image(box, width, height).astype(np.float32)
    landmarks = (face.landmarks @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)
    return TrackedFace(box=box, landmarks=landmarks, det_score=face.det_score, detected=False,
                       track_id=face.track_id)


def _similarity(old: np.ndarray, new: np.ndarray, min_inliers: int = 4) -> np.ndarray | None:
    """Robust similarity transform between matched points; None when too few agree or the scale is implausible."""
    if len(old) < min_inliers:
        return None
    matrix, inliers = cv2.estimateAffinePartial2D(old, new, method=cv2.LMEDS)
    if matrix is None or inliers is None or int(inliers.sum()) < min_inliers:
        return None
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    return matrix if 0.7 <= scale <= 1.4 else None  # a face does not change size this much between frames


# 10 iterations per level, not 20: the same tracks on the valid-photo videos (IDF1 0.912 vs 0.912, same count) for
# a quarter less time in the flow stage.
_LK = dict(maxLevel=3, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 0.03))


def camera_motion(previous_gray: np.ndarray, gray: np.ndarray) -> np.ndarray | None:
    """Similarity of the whole picture between two frames (pan, zoom, shake), from corners all over it."""
    corners = cv2.goodFeaturesToTrack(previous_gray, maxCorners=150, qualityLevel=0.01, minDistance=16)
    if corners is None or len(corners) < 8:
        return None
    # OpenCV's stubs refuse nextPts=None with keyword options, which OpenCV itself takes.
    moved, status, _ = cv2.calcOpticalFlowPyrLK(  # type: ignore[call-overload]
        previous_gray, gray, corners, None, winSize=(21, 21), **_LK)
    good = status.reshape(-1).astype(bool)
    return _similarity(corners.reshape(-1, 2)[good], moved.reshape(-1, 2)[good], min_inliers=8)


def follow_faces(previous_gray: np.ndarray, gray: np.ndarray, faces: list[TrackedFace]) -> list[TrackedFace]:
    """The faces moved into the new frame. Each face follows its own points (landmarks and a grid over it); a
    face whose points cannot be followed (small, blurred, occluded) moves with the camera instead, and a face
    that leaves the frame is dropped until the detector finds it again."""
    if not faces:
        return []
    points = [_face_points(face) for face in faces]
    smallest = min(face.size for face in faces)
    window = int(np.clip(smallest * 0.6, 11, 31)) | 1
    moved, status, _ = cv2.calcOpticalFlowPyrLK(  # type: ignore[call-overload]
        previous_gray, gray, np.concatenate(points).reshape(-1, 1, 2), None, winSize=(window, window), **_LK)
    moved, status = moved.reshape(-1, 2), status.reshape(-1).astype(bool)
    height, width = gray.shape[:2]
    followed, start, camera = [], 0, None
    for face, face_points in zip(faces, points):
        end = start + len(face_points)
        good = status[start:end]
        matrix = _similarity(face_points[good], moved[start:end][good])
        start = end
        if matrix is None:
            camera = camera if camera is not None else camera_motion(previous_gray, gray)
            if camera is None:
                continue
            matrix = camera
        moved_face = _apply(face, matrix, width, height)
        if moved_face is not None:
            followed.append(moved_face)
    return followed


@dataclass
class LabelSmoother:
    """Steady label of one track from its last `window` classifications.

    The shown label is the class with the highest mean probability, but it only changes when the new leader's
    mean beats the shown class's mean by `margin` (hysteresis), so one doubtful crop does not flip it.
    """

    window: int = 5
    margin: float = 0.2
    history: deque = field(default_factory=deque)
    label: str | None = None
    totals: dict = field(default_factory=dict)  # summed probabilities over the whole track, for its summary
    count: int = 0

    def add(self, probabilities: dict[str, float]) -> None:
        self.history.append(probabilities)
        while len(self.history) > self.window:
            self.history.popleft()
        for name, value in probabilities.items():
            self.totals[name] = self.totals.get(name, 0.0) + float(value)
        self.count += 1
        mean = self.mean()
        leader = max(mean, key=mean.__getitem__)
        if self.label is None or self.label not in mean or mean[leader] - mean[self.label] >= self.margin:
            self.label = leader

    def mean(self) -> dict[str, float]:
        names = {name for entry in self.history for name in entry}
        return {name: float(np.mean([entry.get(name, 0.0) for entry in self.history])) for name in sorted(names)}

    def overall(self) -> tuple[str | None, dict[str, float]]:
        """The label and mean probabilities over every classification the track had."""
        if not self.count:
            return None, {}
        mean = {name: total / self.count for name, total in self.totals.items()}
        return max(mean, key=mean.__getitem__), mean
