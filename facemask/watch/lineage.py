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
    """Tracks grouped into people. Feed each analysed frame's faces (track id, box, detected) with the frame's index
    (analysed frames, so a camera outage, which the tracks live through, does not age them); `person(track_id)` is
    the set of tracks that are one person, `person_id(track_id)` its oldest track.

    A new track continues another when its face's centre is within `reach` face widths of where that track was
    last (followed boxes drift, above all at a frame's edge), at a similar size, seen within memory_frames, and that
    track was not detected elsewhere in the same frame (then they are two faces)."""

    def __init__(self, memory_frames: float, reach: float = 1.0, size_ratio: float = 1.6):
        self.memory_frames, self.reach, self.size_ratio = memory_frames, reach, size_ratio
        self.last_seen: dict[int, tuple[int, np.ndarray, bool]] = {}  # track id: (frame, box, detected)
        self.root: dict[int, int] = {}  # track id: its person's oldest track (only for people of several tracks)
        self.members: dict[int, set[int]] = {}  # oldest track: the person's tracks
        self.retired: set[int] = set()  # tracks the watch forgot whose person still has tracks in play

    def observe(self, index: int, faces: list[tuple[int, np.ndarray, bool]]) -> None:
        for track_id, box, _ in faces:
            if track_id not in self.last_seen and track_id not in self.root:
                parent = self._continued(index, np.asarray(box, dtype=np.float32))
                if parent is not None:
                    self._join(parent, track_id)
                    log.debug("track #%d starts on the face of track #%d: the same person", track_id, parent)
        for track_id, box, detected in faces:
            self.last_seen[track_id] = (index, np.asarray(box, dtype=np.float32), detected)
        if len(self.last_seen) > 256:
            self.forget(index)

    def _continued(self, index: int, box: np.ndarray) -> int | None:
        size = float(widths_heights(box).max())
        best, best_distance = None, None
        for other, (seen_at, seen_box, detected) in self.last_seen.items():
            if index - seen_at > self.memory_frames or (seen_at == index and detected):
                continue
            other_size = float(widths_heights(seen_box).max())
            distance = float(np.linalg.norm(centre(box) - centre(seen_box)))
            if distance <= self.reach * max(size, other_size) and \
                    max(size, other_size) <= self.size_ratio * max(min(size, other_size), 1.0) and \
                    (best_distance is None or distance < best_distance):
                best, best_distance = other, distance
        return best

    def _join(self, one: int, other: int) -> None:
        first, second = self.person_id(one), self.person_id(other)
        if first == second:
            return
        oldest, newer = min(first, second), max(first, second)
        merged = self.members.pop(oldest, {oldest}) | self.members.pop(newer, {newer})
        self.members[oldest] = merged
        for track_id in merged:
            self.root[track_id] = oldest

    def person_id(self, track_id: int) -> int:
        return self.root.get(track_id, track_id)

    def person(self, track_id: int) -> set[int]:
        return self.members.get(self.person_id(track_id), {track_id})

    def retire(self, track_ids) -> set[int]:
        """The tracks the watch forgot (long gone); returns those whose whole person is gone, which the caller may
        forget too (a person some of whose tracks are still in play keeps its counted and evented marks)."""
        forgotten: set[int] = set()
        for track_id in track_ids:
            self.last_seen.pop(track_id, None)
            person = self.person(track_id)
            self.retired.add(track_id)
            if person <= self.retired:
                forgotten |= person
                self.retired -= person
                self.members.pop(self.person_id(track_id), None)
                for member in person:
                    self.root.pop(member, None)
        return forgotten

    def forget(self, index: int) -> None:
        """Tracks not seen within memory_frames can no longer be a new track's parent (their people stay)."""
        for track_id in [key for key, (seen_at, _, _) in self.last_seen.items()
                         if index - seen_at > self.memory_frames]:
            del self.last_seen[track_id]
