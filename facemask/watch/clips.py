"""A short clip per event, cut from the recordings: from a few seconds before its start to a few seconds after its
end, capped in length.

The clip is the recorded video itself, packets copied (remuxed), never decoded or encoded again: its frames are
the recordings' frames, covered by the same fail-safe privacy cover, and a clip costs next to no CPU. A copy starts
on a keyframe (one a second in the recordings), so a clip may begin up to a second before its pre-capture. It may
span segments (the recorder's encoder settings are the same in each, so their streams join), and stops at an
outage or where the stream changes (a new frame size). It is cut once the recording holds the post-capture, and
at shutdown for the events that are still waiting (with what was recorded)."""
from __future__ import annotations

import logging
import math
import queue
import re
import threading
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av

log = logging.getLogger("facemask.watch")

MILLISECONDS = Fraction(1, 1000)
SEGMENT_NAME = re.compile(r"_(\d{8}T\d{6}\.\d{3})Z_\d+\.mp4$")
CLIP_MP4 = {"movflags": "+faststart"}  # the index up front: a browser starts playing before the whole file is in


def segment_start(path: Path) -> float | None:
    """When a segment starts (seconds since the epoch), from the UTC time in its name (SegmentRecorder)."""
    match = SEGMENT_NAME.search(path.name)
    if match is None:
        return None
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M%S.%f").replace(tzinfo=timezone.utc).timestamp()


def cut_clip(segments: list[Path], start: float, end: float, out: Path) -> tuple[float, float] | None:
    """Copies the recorded packets from the last keyframe at or before `start` to `end` (seconds since the epoch)
    into the MP4 `out`; the times (since the epoch) of its first and last frame, or None when the recordings hold
    nothing of that time."""
    timed = sorted((when, path) for path in segments if (when := segment_start(path)) is not None)
    partial = out.with_name(out.name + ".part")
    target: av.container.OutputContainer | None = None
    target_stream = None
    extradata: bytes | None = None
    first = last = None
    last_pts = -1

    def copy(at: float, packet: av.Packet) -> None:
        nonlocal last, last_pts
        assert first is not None and target is not None
        pts = max(round((at - first) * 1000), last_pts + 1)
        duration = round(float(packet.duration * packet.time_base) * 1000) if packet.duration else 0
        packet.pts = packet.dts = pts  # the recorder's x264 makes no B-frames: decode order is display order
        packet.time_base, packet.duration = MILLISECONDS, duration
        packet.stream = target_stream
        target.mux(packet)
        last, last_pts = at, pts

    try:
        for number, (began, path) in enumerate(timed):
            following = timed[number + 1][0] if number + 1 < len(timed) else math.inf
            if following <= start or began > end:
                continue
            with av.open(str(path)) as source:
                stream = source.streams.video[0]
                if target is None:
                    target = av.open(str(partial), mode="w", format="mp4", options=CLIP_MP4)
                    target_stream = target.add_stream_from_template(stream)
                    extradata = stream.codec_context.extradata
                elif stream.codec_context.extradata != extradata:  # another frame size: the clip stops here
                    break
                if first is not None and began - (last or began) > 2.0:  # an outage between the segments
                    break
                waiting: list[tuple[float, av.Packet]] = []  # since the last keyframe, until `start` is reached
                try:
                    for packet in source.demux(stream):
                        if packet.pts is None or not packet.size:
                            continue
                        at = began + float(packet.pts * packet.time_base)
                        if at > end:
                            break
                        if first is None:
                            if packet.is_keyframe:
                                waiting = []
                            waiting.append((at, packet))
                            if at < start or not waiting[0][1].is_keyframe:
                                continue
                            first = waiting[0][0]
                            for earlier_at, earlier in waiting:
                                copy(earlier_at, earlier)
                            waiting = []
                        else:
                            copy(at, packet)
                except av.error.FFmpegError:  # the segment still being written ends in a fragment not yet whole
                    pass
                if first is None and waiting and waiting[0][1].is_keyframe:  # all of it before `start`
                    first = waiting[0][0]
                    for earlier_at, earlier in waiting:
                        copy(earlier_at, earlier)
                if last is not None and following > end:
                    break
    except av.error.FFmpegError as error:
        log.warning("event clip %s: cannot read the recordings: %s", out.name, error)
    finally:
        if target is not None:
            target.close()
    if first is None or last is None:
        partial.unlink(missing_ok=True)
        return None
    partial.replace(out)
    return first, last


class EventClips:
    """Cuts each event's clip (pre_s before its start to post_s after its end, at most max_s) from the recordings
    on a thread of its own, once the recording has passed the clip's end by a keyframe interval (its last fragment
    is then in the file); done(event id, clip file name, seconds before the start, clip length) is told of each."""

    def __init__(self, segments: Callable[[], list[Path]], folder: Path, camera: str,
                 done: Callable[[str, str, float, float], None], pre_s: float = 3.0, post_s: float = 3.0,
                 max_s: float = 60.0, settle_s: float = 1.5):
        self.segments, self.folder, self.camera, self.done = segments, folder, camera, done
        self.pre_s, self.post_s, self.max_s, self.settle_s = pre_s, post_s, max_s, settle_s
        self.waiting: list[tuple[float, str, float, float, float]] = []  # (due, id, event start, clip start, end)
        self.lock = threading.Lock()
        self.queue: queue.Queue = queue.Queue()
        self.failed_logged = False
        self.thread = threading.Thread(target=self._run, name=f"clips-{camera}", daemon=True)
        self.thread.start()

    def request(self, event_id: str, started: float, ended: float) -> None:
        """An event ended: its clip is cut once the recording holds its post-capture."""
        clip_start = started - self.pre_s
        clip_end = min(ended + self.post_s, clip_start + self.max_s)
        with self.lock:
            self.waiting.append((clip_end + self.settle_s, event_id, started, clip_start, clip_end))

    def recorded(self, captured_at: float) -> None:
        """The recording has reached captured_at: the clips due by then are cut."""
        with self.lock:
            due = [item for item in self.waiting if item[0] <= captured_at]
            self.waiting = [item for item in self.waiting if item[0] > captured_at]
        for item in due:
            self.queue.put(item)

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            _, event_id, started, clip_start, clip_end = item
            name = f"{self.camera}_{event_id}.mp4"
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                span = cut_clip(self.segments(), clip_start, clip_end, self.folder / name)
            except (OSError, av.FFmpegError) as error:
                if not self.failed_logged:
                    log.error("cannot write event clips to %s: %s", self.folder, error)
                    self.failed_logged = True
                continue
            if span is None:
                log.debug("event %s: no recording of its time, no clip", event_id)
                continue
            self.done(event_id, name, round(started - span[0], 3), round(span[1] - span[0], 3))

    def close(self) -> None:
        """Cuts the clips still waiting from what was recorded (call once the recorder has closed its segment)."""
        with self.lock:
            waiting, self.waiting = self.waiting, []
        for item in waiting:
            self.queue.put(item)
        self.queue.put(None)
        self.thread.join()
