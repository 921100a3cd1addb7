"""Result links (detection/app/shared_results.py): unguessable ids, the same result back, gone after the retention
period; the browser test (tests/test_web_page_round_two.py) opens the links in Chromium."""
from __future__ import annotations

import os
import time

import pytest

from detection.app.shared_results import RESULT_ID, SharedResults


def test_a_kept_result_comes_back_by_its_id_until_its_retention_period_ends(tmp_path):
    shared = SharedResults(tmp_path, retention_h=1)
    ids = [shared.keep({"kind": "photo", "name": f"{n}.jpg"}) for n in range(3)]
    assert len(set(ids)) == 3 and all(RESULT_ID.fullmatch(result_id) for result_id in ids)  # 192 random bits each
    result = shared.get(ids[1])
    assert result is not None and result["name"] == "1.jpg"
    assert result["expires_at"] == pytest.approx(time.time() + 3600, abs=5)
    for guess in ("", "x" * 32, "../../etc/passwd", ids[1][:-1], ids[1] + "A"):
        assert shared.get(guess) is None, guess
    # An hour and a bit later: gone, and removed from the folder the next time anything is kept.
    old = time.time() - 3700
    os.utime(shared.folder / f"{ids[0]}.json", (old, old))
    assert shared.get(ids[0]) is None and not (shared.folder / f"{ids[0]}.json").exists()
    os.utime(shared.folder / f"{ids[2]}.json", (old, old))
    shared.keep({"kind": "photo", "name": "later.jpg"})
    assert not (shared.folder / f"{ids[2]}.json").exists() and shared.get(ids[1]) is not None



def test_past_the_size_cap_the_oldest_links_expire_first_and_the_newest_always_stays(tmp_path):
    """A 12 MP photo's result is about 10 MB: without a cap a busy page fills the jobs store within its 24 h."""
    shared = SharedResults(tmp_path, retention_h=1, max_bytes=25_000)
    photo = "x" * 10_000  # each result about 10 kB
    ids = []
    for n in range(4):
        ids.append(shared.keep({"kind": "photo", "name": f"{n}.jpg", "annotated": photo}))
        then = time.time() - 100 + n  # kept one after another
        os.utime(shared.folder / f"{ids[-1]}.json", (then, then))
    assert [shared.get(result_id) is not None for result_id in ids] == [False, False, True, True]
    assert sum(path.stat().st_size for path in shared.folder.glob("*.json")) <= 25_000
    huge = shared.keep({"kind": "photo", "name": "huge.jpg", "annotated": "x" * 40_000})
    assert shared.get(huge) is not None and [shared.get(i) is not None for i in ids] == [False] * 4
