"""A person is counted once even when their face gets a new track.

The tracker can start a second track on a face it already follows (the detector's box and where optical flow put
the face disagree; more often when frames are skipped to keep up, since the face moves further between two
analysed frames, and at a frame's edge, where flow drifts off a half-visible face); the old track then fades out.
Re-identification (facemask.video.tracks) only joins tracks that were lost, not ones still in view. So the watch
notes, when a track first appears, the track whose face it starts on, and a track born on a person inherits that
person's count and event instead of raising new ones. Two people side by side are more than a face width apart.
"""
from __future__ import annotations

import logging

import numpy as np

from facemask.core.boxes import centre, widths_heights

log = logging.getLogger("facemask.watch")


class TrackLineage:
    """Feed each frame's faces (track id, box, detected) with the frame's time; `line(track_id)` is the person.

    A new track continues another when its face's centre is within `reach` face widths of where that track was
    last (followed boxes drift, above all at a frame's edge), at a similar size, seen within memory_s, and that
    track was not detected elsewhere in the same frame (then they are two faces)."""

    def __init__(self, reach: float = 1.0, size_ratio: float = 1.6, memory_s: float = 1.5):
        self.reach, self.size_ratio, self.memory_s = reach, size_ratio, memory_s
        self.last_seen: dict[int, tuple[float, np.ndarray, bool]] = {}  # track id: (time, box, detected)
        self.parent: dict[int, int] = {}

    def observe(self, time_s: float, faces: list[tuple[int, np.ndarray, bool]]) -> None:
        for track_id, box, _ in faces:
            if track_id not in self.last_seen:
                parent = self._continued(time_s, np.asarray(box, dtype=np.float32))
                if parent is not None:
                    self.parent[track_id] = parent
                    log.debug("track #%d starts on the face of track #%d: the same person", track_id, parent)
        for track_id, box, detected in faces:
            self.last_seen[track_id] = (time_s, np.asarray(box, dtype=np.float32), detected)
        if len(self.last_seen) > 256:
            self.forget(time_s)

    def _continued(self, time_s: float, box: np.ndarray) -> int | None:
        size = float(widths_heights(box).max())
        best, best_distance = None, None
        for other, (seen_at, seen_box, detected) in self.last_seen.items():
            if time_s - seen_at > self.memory_s or (seen_at == time_s and detected):
                continue
            other_size = float(widths_heights(seen_box).max())
            distance = float(np.linalg.norm(centre(box) - centre(seen_box)))
            if distance <= self.reach * max(size, other_size) and \
                    max(size, other_size) <= self.size_ratio * max(min(size, other_size), 1.0) and \
                    (best_distance is None or distance < best_distance):
                best, best_distance = other, distance
        return best

    def line(self, track_id: int) -> set[int]:
        """The track and the tracks it continues: one person. Ancestors the watch retired drop out of it, so the
        caller asks whether any of the line is counted, not only the first."""
        line = {track_id}
        while track_id in self.parent and self.parent[track_id] not in line:
            track_id = self.parent[track_id]
            line.add(track_id)
        return line

    def retire(self, track_ids) -> None:
        """Forget tracks the watch forgot (long gone): memory stays flat all day."""
        for track_id in track_ids:
            self.parent.pop(track_id, None)
            self.last_seen.pop(track_id, None)

    def forget(self, now_s: float) -> None:
        """Tracks not seen within memory_s can no longer be a new track's parent (their lines stay)."""
        for track_id in [key for key, (seen_at, _, _) in self.last_seen.items() if now_s - seen_at > self.memory_s]:
            del self.last_seen[track_id]
