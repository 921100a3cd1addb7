"""The docs stay true as the code changes: they quote no test counts, which go stale with every test added."""
from __future__ import annotations

import re

from facemask.core.paths import REPO_ROOT

# "326 tests", "273 passed", "42 deselected", "tests run / deselected | 273 / 53": counts of this suite's tests.
# ("3 failed" alone is not one: the docs count failed webhook events too.)
TEST_COUNT = re.compile(r"\b\d+\s+(?:tests?|passed|skipped|deselected|xfailed)\b"
                        r"|tests run\b[^\n]*\|\s*\d+", re.IGNORECASE)
# Phrases with a number that are not counts of this suite's tests (data set splits, photos).
NOT_TEST_COUNTS = re.compile(r"\b\d+\s+test\s+(?:photos|faces|images|videos|set)\b", re.IGNORECASE)


def _quoted_counts(text: str) -> list[str]:
    return [match.group(0) for match in TEST_COUNT.finditer(NOT_TEST_COUNTS.sub("", text))]


def test_the_count_check_finds_a_count():
    assert _quoted_counts("The full suite runs the same 326 tests as before; 273 passed, 42 deselected.") == [
        "326 tests", "273 passed", "42 deselected"]
    assert _quoted_counts("| the same: tests run / deselected | 273 / 53 |") == ["tests run / deselected | 273"]
    assert _quoted_counts("end to end on the 171 test photos, 285 test faces") == []
    assert _quoted_counts("the webhook: 0 sent, 0 failed") == []


def test_docs_quote_no_test_counts():
    documents = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
    found = {path.name: counts for path in documents if (counts := _quoted_counts(path.read_text()))}
    assert found == {}, "say how to count them (python -m pytest --collect-only -q) instead"
