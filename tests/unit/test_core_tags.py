"""TagSource: fresh tags that never repeat across incarnations (core/tags.py)."""

from __future__ import annotations

import pytest

from sealbridge.core.errors import ConfigError
from sealbridge.core.tags import TagSource


def test_tags_keep_their_prefix_and_kind_and_count_within_an_incarnation() -> None:
    tags = TagSource("committee")
    tags.start(12.5)
    assert tags.issue("logs") == "committee:logs:0.1@12.5:1"
    assert tags.issue() == "committee:0.1@12.5:2"
    slash = TagSource(sep="/", incarnation=3)
    slash.start(1.0)
    assert slash.issue("heartbeat") == "heartbeat/3.1@1.0/1"


def test_no_tag_of_one_incarnation_equals_one_of_another() -> None:
    def tags_of(source: TagSource, now: float | None) -> set[str]:
        if now is not None:
            source.start(now)
        return {source.issue(kind) for kind in ("", "a", "a") for _ in range(3)}

    seen: list[set[str]] = []
    never = TagSource("feed")
    seen.append(tags_of(never, None))  # never started (a unit test's direct calls)
    seen.append(tags_of(TagSource("feed"), 0.0))  # a fresh object, started at 0
    seen.append(tags_of(TagSource("feed"), 5.0))  # restarted later
    same = TagSource("feed")
    seen.append(tags_of(same, 7.0))
    seen.append(tags_of(same, 7.0))  # the same object, restarted at the same instant
    seen.append(tags_of(TagSource("feed", incarnation=1), 7.0))  # built again, same instant
    assert tags_of(TagSource("feed"), 7.0) & seen[-3]  # the case the wiring's count closes
    for i, one in enumerate(seen):
        for other in seen[i + 1 :]:
            assert not one & other


def test_a_separator_that_could_appear_in_an_incarnation_is_refused() -> None:
    with pytest.raises(ConfigError):
        TagSource("x", sep=".")
    with pytest.raises(ConfigError):
        TagSource("x", incarnation=-1)
