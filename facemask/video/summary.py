"""What a video run reports, typed: time per stage, each person's track, the people count, and the footer of the
video's JSON record. to_dict() gives the JSON objects, with the keys and order the record has always had."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class StageTimes:
    """Seconds spent per stage of the video loop. Decoding, drawing and encoding run on threads of their own
    (each adds to its own field only) and overlap with the analysis."""

    decode: float = 0.0
    detect: float = 0.0
    follow: float = 0.0
    track: float = 0.0
    classify_wait: float = 0.0
    draw: float = 0.0
    encode: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {stage: round(seconds, 2) for stage, seconds in asdict(self).items()}


@dataclass
class TrackSummary:
    """One person (track) of a video: overall label and probabilities, when and how long they were in view."""

    track_id: int
    label: str
    probabilities: dict[str, float]
    first_frame: int
    last_frame: int
    first_time_s: float
    last_time_s: float
    frames_on_screen: int
    seconds_on_screen: float
    detections: int
    classifications: int
    label_changes: int
    fragments: int
    counted: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PeopleCount:
    """The tracks counted as people, by label, and the rule they passed."""

    total: int
    by_label: dict[str, int]
    rule: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class VideoSummary:
    people: PeopleCount
    tracks: list[TrackSummary]
    detector_runs: int
    crops_classified: int
    seconds: StageTimes

    def to_dict(self) -> dict:
        return {"people": self.people.to_dict(), "tracks": [track.to_dict() for track in self.tracks],
                "detector_runs": self.detector_runs, "crops_classified": self.crops_classified,
                "seconds": self.seconds.to_dict()}


@dataclass
class VideoRun:
    """How a video run ended: the footer of its JSON record."""

    frames_total: int
    unreadable_frames: int
    interrupted: str | None  # the reason should_stop() gave (e.g. "SIGTERM"), None when the source ended
    wall_s: float
    classifier_errors: dict[str, str]  # why, by frame ("frame 12")
    summary: VideoSummary
    warnings: list[str] = field(default_factory=list)  # e.g. the file's header said another frame count

    def to_dict(self) -> dict:
        return {"frames_total": self.frames_total, "unreadable_frames": self.unreadable_frames,
                "interrupted": self.interrupted, "wall_s": self.wall_s, "classifier_errors": self.classifier_errors,
                "summary": self.summary.to_dict(), **({"warnings": self.warnings} if self.warnings else {})}
