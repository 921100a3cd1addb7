"""Which parts of each frame the watch publishes are blurred: privacy that fails safe.

The detector runs on every few frames and can miss a face for a while (a patterned mask, a head half inside the
frame). A frame leaves the process (recording, live view, snapshot) only once the next detector run after it has
been analysed, and is covered by:
- its own faces (detected, followed by optical flow, coasting; confirmed or not);
- every person seen within hold_s before or up to the next detector run after it, placed where their observations
  around the frame put them (interpolated between two, moved along their last motion otherwise) and grown by the
  distance they could have moved meanwhile;
- more when unsure: a new person's box grows more, a box near the frame's edge reaches to the edge (the rest of the
  head may be just outside, or cut), and a frame long after its person's last observation (the detector missed it,
  or frames were dropped to keep up) grows with the time since;
- the whole frame when its delay could not run out: the frames still waiting when the watch stops (their later
  detector runs never come: a head half inside the frame in the last second may never be found) and a frame pushed
  out by max_wait_frames before a detector run at or after it.
FaceCover only places boxes; facemask.core.privacy.anonymize blurs them (with its own margin on top).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from facemask.core.boxes import widths_heights
from facemask.video.output import FinishedFrame


@dataclass
class CoverSettings:
    hold_s: float = 2.0  # a person stays covered this long after they were last seen
    new_track_detections: int = 3  # a person detected fewer times than this is new: their box grows more
    new_track_margin: float = 0.25  # of the face size, on each side, on top of the blur's own margin
    edge_reach: float = 0.5  # a box within this share of its size from an edge is stretched to the edge
    speed_faces_per_s: float = 3.0  # how fast a face may move (face sizes a second) when no motion is known yet
    uncertainty_faces_per_s: float = 0.5  # growth per second since the last observation, on top of the motion
    max_growth_faces: float = 2.0  # at most this many face sizes on each side
    # A frame is published this long after it was read, and not before a detector run at or after it: a face
    # first found later (coming in at an edge, out of the shadow) is covered back to when it could have come in.
    delay_s: float = 1.0
    max_wait_frames: int = 90  # a frame waits at most this many frames, whatever the rate (memory stays bounded)
    drift_faces_per_s: float = 1.0  # how far a followed box may have drifted off its face since the last detection
    behind_s: float = 1.0  # after frames were skipped because the analysis fell behind, boxes grow this long


@dataclass
class _Person:
    seen: deque = field(default_factory=lambda: deque(maxlen=256))  # (time_s, box, detected), oldest first
    detections: int = 0


class FaceCover:
    """Feed finished frames in order (push); each comes back, once the next detector run is known, with the boxes
    to blur in it."""

    def __init__(self, settings: CoverSettings | None = None):
        self.settings = settings or CoverSettings()
        self.people: dict[int, _Person] = {}
        self.waiting: deque[FinishedFrame] = deque()
        self.detected_at: float | None = None  # time of the latest frame the detector ran on
        self.behind_until = float("-inf")  # frames up to this time grow their boxes: the analysis fell behind
        self.covered_whole = 0  # frames published wholly blurred: their delay could not run out

    def push(self, frame: FinishedFrame) -> list[tuple[FinishedFrame, list[np.ndarray]]]:
        self._observe(frame)
        self.waiting.append(frame)
        now = frame_time(frame)
        if frame.record["detected"]:
            self.detected_at = now
        released = []
        while self.waiting:
            first, at = self.waiting[0], frame_time(self.waiting[0])
            known = self.detected_at is not None and self.detected_at >= at \
                and now - at >= self.settings.delay_s - 1e-6
            if not (known or len(self.waiting) > self.settings.max_wait_frames):
                break
            released.append((self.waiting.popleft(), self._boxes(first) if known else self._whole(first)))
        if released:
            self._forget(frame_time(released[-1][0]))
        return released

    def flush(self) -> list[tuple[FinishedFrame, list[np.ndarray]]]:
        """Every waiting frame (the watch is stopping), covered whole: no later detector run will tell what came in
        at its edges."""
        released = [(frame, self._whole(frame)) for frame in self.waiting]
        self.waiting.clear()
        self._forget(frame_time(released[-1][0]) if released else None)
        return released

    def _whole(self, frame: FinishedFrame) -> list[np.ndarray]:
        self.covered_whole += 1
        height, width = frame.image.shape[:2]
        return [np.array([0.0, 0.0, width, height], dtype=np.float32)]

    def _observe(self, frame: FinishedFrame) -> None:
        time_s = frame_time(frame)
        if frame.record.get("late"):  # frames were skipped before this one because the analysis fell behind
            self.behind_until = time_s + self.settings.behind_s
        for face in frame.record["faces"]:
            if face.track_id is None:
                continue
            person = self.people.setdefault(face.track_id, _Person())
            detected = face.source == "detected"
            person.seen.append((time_s, np.asarray(face.box, dtype=np.float32), detected))
            person.detections += detected

    def _forget(self, now_s: float | None) -> None:
        if now_s is None:
            return
        for track_id in [key for key, person in self.people.items()
                         if now_s - person.seen[-1][0] > self.settings.hold_s]:
            del self.people[track_id]

    def _boxes(self, frame: FinishedFrame) -> list[np.ndarray]:
        settings, time_s = self.settings, frame_time(frame)
        height, width = frame.image.shape[:2]
        behind = time_s <= self.behind_until
        boxes = [np.asarray(face.box, dtype=np.float32) for face in frame.record["faces"] if face.track_id is None]
        for person in self.people.values():
            for box in self._placed(person, time_s):
                margin = settings.new_track_margin * (
                    (person.detections < settings.new_track_detections) + behind)
                if margin:
                    box = grow(box, margin * widths_heights(box))
                boxes.append(to_edges(box, width, height, settings.edge_reach))
        return boxes

    def _placed(self, person: _Person, time_s: float) -> list[np.ndarray]:
        """Where the person's face may be at time_s: by all their observations, and by their detections alone
        (optical flow between two detector runs can drift off a face); each grown by the uncertainty."""
        observed = [(t, box) for t, box, _ in person.seen]
        detected = [(t, box) for t, box, was_detected in person.seen if was_detected]
        boxes = []
        for seen in (observed, detected) if len(detected) < len(observed) else (observed,):
            box = self._place(seen, time_s)
            if box is not None:
                boxes.append(box)
        own = [(box, was_detected) for t, box, was_detected in person.seen if t == time_s]
        if own and not own[-1][1]:  # followed, not detected: it may have drifted since the last detection
            last_detection = max((t for t, _ in detected if t <= time_s), default=observed[0][0])
            boxes.append(grow(own[-1][0], self._uncertainty(time_s - last_detection, own[-1][0],
                                                            self.settings.drift_faces_per_s)))
        return boxes

    def _place(self, seen: list[tuple[float, np.ndarray]], time_s: float) -> np.ndarray | None:
        """Where observations `seen` put the face at time_s, grown by the uncertainty; None when out of the hold."""
        settings = self.settings
        if not seen:
            return None
        before = [(t, box) for t, box in seen if t <= time_s]
        after = [(t, box) for t, box in seen if t > time_s]
        if before and before[-1][0] == time_s:
            return before[-1][1]
        if before and after:  # between two observations: anywhere on the way, plus the way itself
            (t0, box0), (t1, box1) = before[-1], after[0]
            share = (time_s - t0) / max(t1 - t0, 1e-6)
            middle = box0 + share * (box1 - box0)
            return grow(middle, np.abs(box1 - box0).reshape(2, 2).max(axis=0) * 0.5
                        + self._uncertainty(min(time_s - t0, t1 - time_s), box0))
        if before:  # not seen since: moved along its last motion for up to hold_s
            t0, box0 = before[-1]
            elapsed = time_s - t0
            if elapsed > settings.hold_s:
                return None
            velocity = self._velocity(before)
            moved = box0 + np.tile(velocity, 2) * elapsed
            return grow(moved, np.abs(velocity) * elapsed * 0.5 + self._uncertainty(elapsed, box0))
        t1, box1 = after[0]  # first seen after this frame (a new face, detected at the next run): on its way in
        if t1 - time_s > settings.delay_s + settings.hold_s:
            return None
        return grow(box1, self._uncertainty(t1 - time_s, box1, settings.speed_faces_per_s))

    @staticmethod
    def _velocity(seen: list[tuple[float, np.ndarray]]) -> np.ndarray:
        """Pixels a second of the face's centre over its last observations (zero with one)."""
        if len(seen) < 2:
            return np.zeros(2, dtype=np.float32)
        (t0, box0), (t1, box1) = seen[max(0, len(seen) - 4)], seen[-1]
        if t1 - t0 <= 0:
            return np.zeros(2, dtype=np.float32)
        return ((box1[:2] + box1[2:]) - (box0[:2] + box0[2:])) / 2.0 / (t1 - t0)

    def _uncertainty(self, elapsed_s: float, box: np.ndarray, faces_per_s: float | None = None) -> np.ndarray:
        rate = self.settings.uncertainty_faces_per_s if faces_per_s is None else faces_per_s
        size = widths_heights(box)
        return np.minimum(size * rate * max(elapsed_s, 0.0), size * self.settings.max_growth_faces)


def frame_time(frame: FinishedFrame) -> float:
    """When the frame was read (the watch sets captured_at), else its time in the video."""
    return frame.record.get("captured_at", frame.record["time_s"])


def grow(box: np.ndarray, by: np.ndarray) -> np.ndarray:
    """The box grown by (x, y) pixels on each side."""
    by = np.broadcast_to(np.asarray(by, dtype=np.float32), (2,))
    return np.concatenate([box[:2] - by, box[2:] + by]).astype(np.float32)


def to_edges(box: np.ndarray, width: int, height: int, reach: float) -> np.ndarray:
    """A box near an edge of the frame stretched to it: the rest of that head may be just outside, or cut."""
    size_x, size_y = widths_heights(box)
    x1, y1, x2, y2 = (float(v) for v in box)
    if x1 < reach * size_x:
        x1 = 0.0
    if y1 < reach * size_y:
        y1 = 0.0
    if x2 > width - reach * size_x:
        x2 = float(width)
    if y2 > height - reach * size_y:
        y2 = float(height)
    return np.array([x1, y1, x2, y2], dtype=np.float32)
