"""The units of the video path in-process, without a classifier service or a video file: the people policy
(video_tracks.TrackBook), decoding ahead (video_source.ReadAhead) and the writer (video_output.FrameWriter)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from facemask.core.crops import SERVED
from facemask.core.detector import RetinaFaceDetector
from facemask.core.images import decode_image
from facemask.core.paths import REPO_ROOT
from facemask.core.results import Classification, FaceResult, Faces, NotClassified
from facemask.video.output import FinishedFrame, FrameWriter, JsonFramesWriter
from facemask.video.source import ReadAhead
from facemask.video.summary import StageTimes
from facemask.video.tracking import TrackedFace
from facemask.video.tracks import TrackBook, VideoSettings

MASKED = Classification("with_mask", 0.9, {"with_mask": 0.9, "without_mask": 0.1})
BARE = Classification("without_mask", 0.9, {"with_mask": 0.1, "without_mask": 0.9})


@pytest.fixture(scope="module")
def photo_and_face():
    image = decode_image(REPO_ROOT / "sample-images" / "group_mixed.jpg")
    face = max(RetinaFaceDetector().detect(image), key=lambda f: f.det_score)
    return image, face


def tracked(face, tracker_id: int, detected: bool = True) -> TrackedFace:
    return TrackedFace(face.box.copy(), face.landmarks.copy(), face.det_score, detected, tracker_id)


def test_when_a_track_is_classified_and_how_its_label_settles(photo_and_face):
    image, face = photo_and_face
    settings = VideoSettings(min_votes=2, reclassify_every=10, label_window=3)
    book = TrackBook(settings, fps=25.0)
    asked = []
    for index in range(16):
        # The detector finds the face every 3rd frame; optical flow follows it in between.
        frame = book.observe([tracked(face, 7, detected=index % 3 == 0)], image, index, lambda: SERVED)
        asked.append(index) if frame.crops else None
        assert [f.track_id for f in frame.faces] == [7]
        for person in frame.targets:
            book.classified(person, MASKED if index < 9 else BARE)
    # First sight, then detector frames until min_votes, then every reclassify_every frames (on a detector frame).
    assert asked == [0, 3, 15]
    # Two votes for a mask, one against: one doubtful vote does not flip the label (hysteresis)...
    result = book.face_result(tracked(face, 7))
    assert isinstance(result, FaceResult) and result.label == "with_mask" and result.confirmed
    # ...a second one does.
    book.classified(7, BARE)
    assert book.face_result(tracked(face, 7)).label == "without_mask"
    assert book.tracks[7].label_changes == 1

    book.classified(7, NotClassified("classifier down"))
    assert book.tracks[7].error == "classifier down"
    people, tracks = book.summary()
    assert people.total == 1 and tracks[0].detections == 6 and tracks[0].frames_on_screen == 16


def test_a_face_that_comes_back_under_a_new_tracker_id_is_the_same_person(photo_and_face):
    image, face = photo_and_face
    book = TrackBook(VideoSettings(), fps=25.0)
    for index in range(3):
        book.observe([tracked(face, 1)], image, index, lambda: SERVED)
    # Gone for 40 frames (longer than the tracker waits), back where it was: the tracker calls it 2.
    frame = book.observe([tracked(face, 2)], image, 43, lambda: SERVED)
    assert [f.track_id for f in frame.faces] == [1] and book.tracks[1].fragments == 2
    # Back after longer than reid_s: a new person.
    frame = book.observe([tracked(face, 3)], image, 43 + 5 * 25, lambda: SERVED)
    assert [f.track_id for f in frame.faces] == [3] and set(book.tracks) == {1, 3}
    assert set(book.retire(index=43 + 5 * 25, older_than_frames=10)) == {1}
    assert set(book.tracks) == {3} and all(track is book.tracks[3] for track in book.track_of.values())


def test_a_face_the_detector_misses_coasts_for_a_few_detector_runs(photo_and_face):
    image, face = photo_and_face
    book = TrackBook(VideoSettings(coast_detections=2), fps=25.0)
    book.observe([tracked(face, 1)], image, 0, lambda: SERVED)
    followed = [tracked(face, 1, detected=False)]
    assert [len(book.coasting(followed, detected=[])) for _ in range(3)] == [1, 1, 0]


def test_read_ahead_yields_every_frame_in_order_and_raises_the_readers_error():
    timing = StageTimes()
    frames = [np.full((4, 4, 3), value, np.uint8) for value in range(10)]
    assert [int(f[0, 0, 0]) for f in ReadAhead(iter(frames), timing)] == list(range(10))
    assert timing.decode >= 0.0

    def broken():
        yield frames[0]
        raise OSError("stream went away")

    reader = ReadAhead(broken(), timing)
    with pytest.raises(OSError, match="went away"):
        list(reader)
    reader.stop()


def test_the_writer_writes_the_video_and_a_complete_json_record(photo_and_face, tmp_path):
    image, face = photo_and_face
    image = cv2.resize(image, (320, 240))
    out = tmp_path / "out.mp4"
    record = JsonFramesWriter(out.with_suffix(".json"), {"source": "test"})
    done: list[int] = []
    writer = FrameWriter(out, 10.0, record, StageTimes(), done.append)
    shown = Faces.from_rows([FaceResult.from_prediction([10, 10, 60, 60], [], 0.9, MASKED, track_id=1,
                                                        source="detected", confirmed=True)])
    writer.put([FinishedFrame(image, shown, {"frame": i, "faces": shown}) for i in range(5)])
    writer.close()
    record.close({"frames_total": writer.written})
    written = json.loads(out.with_suffix(".json").read_text())
    assert written["source"] == "test" and written["frames_total"] == 5 and sum(done) == 5
    assert [frame["frame"] for frame in written["frames"]] == list(range(5))
    assert written["frames"][0]["faces"][0]["label"] == "with_mask"
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    capture.release()


def test_a_frame_reports_whether_its_person_was_confirmed_then_not_when_it_is_written(photo_and_face):
    image, face = photo_and_face
    settings = VideoSettings(confirm_score=face.det_score)
    book = TrackBook(settings, fps=25.0)
    doubtful = TrackedFace(face.box.copy(), face.landmarks.copy(), face.det_score - 0.1, True, 4)
    first = book.observe([doubtful], image, 0, lambda: SERVED)
    book.observe([tracked(face, 4)], image, 1, lambda: SERVED)  # analysed before frame 0 is written
    assert first.confirmed == [False]
    assert not book.face_result(first.faces[0], first.confirmed[0]).confirmed
    assert book.face_result(first.faces[0]).confirmed  # as of now, which thread timing would decide
