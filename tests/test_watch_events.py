"""Events with a start and an end (issue 36): each event is two records with one id, in the events file, on the
webhook and on MQTT, delivered exactly once each, also across a restart."""
from __future__ import annotations

import json
import time

import pytest

from bench.watch_soak import WebhookReceiver, pan_clip, start_watch, wait_for, watch_status
from facemask.serving.local_server import free_port
from facemask.watch.delivery import record_key
from facemask.watch.event_book import EventBook
from tests.test_watch import event_records


def test_an_event_ends_at_the_last_sighting_once_its_person_is_gone_for_the_grace_period():
    ended: list[dict] = []
    book = EventBook(None, "door", end_after_frames=10, on_end=ended.append)
    start = {"id": "e1", "type": "start", "time": "2026-12-07T05:00:00+00:00", "camera": "door", "track_id": 4,
             "label": "without_mask"}
    book.started(start, {4}, 100, 1000.0)
    for index in range(101, 131):  # 1 s in view (10 frames/s), then out of view
        book.seen(index, 1000.0 + (index - 100) / 10, {4} if index <= 110 else set(), lambda track: {track})
    (end,) = ended
    assert end["id"] == "e1" and end["type"] == "end" and end["reason"] == "left"
    assert end["duration_s"] == 1.0, "from the start frame to the last frame the person was in"
    assert end["start"] < end["end"] and end["track_id"] == 4 and end["label"] == "without_mask"
    assert book.get("e1")["end"] == end["end"] and book.get("e1")["duration_s"] == 1.0
    assert "type" not in book.get("e1") and "started_at" not in book.get("e1")

    book.started({**start, "id": "e2"}, {7}, 200, 1010.0)
    book.seen(201, 1010.1, {7}, lambda track: {track})
    book.end_all("stopped")
    assert [(e["id"], e["reason"], e["duration_s"]) for e in ended[1:]] == [("e2", "stopped", 0.1)]
    book.end_all("stopped")
    assert len(ended) == 2, "an event ends once"


@pytest.mark.slow  # two watch runs over a 4 s clip: about 30 s
def test_start_and_end_reach_the_events_file_and_the_webhook_once_and_a_restart_sends_nothing_again(
        classifier_service, tmp_path):
    """A pan across six people: they come into view and leave it, so events start and end while the watch runs."""
    clip = pan_clip(tmp_path / "pan.avi")
    receiver, events = WebhookReceiver(), tmp_path / "events.jsonl"
    receiver.start()
    try:
        first = start_watch(str(clip), classifier_service.url, "--camera", "door", "--events", events, "--webhook",
                            receiver.url, "--event-labels", "with_mask,without_mask,incorrect")
        out, err = first.communicate(timeout=300)
        assert first.returncode == 0, err
        starts, ends = event_records(events, "start"), event_records(events, "end")
        assert len(starts) >= 4 and sorted(e["id"] for e in ends) == sorted(e["id"] for e in starts), \
            "every event has an end with its id"
        by_id = {e["id"]: e for e in starts}
        assert any(e["reason"] == "left" for e in ends), "people left the view while the watch ran"
        assert all(e["reason"] in ("left", "end of video") for e in ends)
        for end in ends:
            start = by_id[end["id"]]
            assert (end["camera"], end["track_id"], end["label"]) == (start["camera"], start["track_id"],
                                                                      start["label"])
            assert end["end"] >= end["start"] and 0 <= end["duration_s"] < 5
        written = [record_key(json.loads(line)) for line in events.read_text().splitlines()]
        assert sorted(key for key, _ in receiver.received) == sorted(written), "each record once"
        assert all(body["type"] == ("end" if key.endswith(":end") else "start") for key, body in receiver.received)

        # A restart with the same events file: the journal says everything was sent, so nothing goes again.
        port = free_port()
        second = start_watch(f"rtsp://127.0.0.1:{free_port()}/door", classifier_service.url, "--camera", "door",
                             "--events", events, "--webhook", receiver.url, listen=port)
        try:
            wait_for(lambda: watch_status(port), 60, "the second run to answer")
            time.sleep(2)
        finally:
            second.terminate()
            _, err = second.communicate(timeout=60)
        assert len(receiver.received) == len(written), "a restart resends nothing"
        assert "still to deliver" not in err
    finally:
        receiver.stop()
