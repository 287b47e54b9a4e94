"""POST_PROCESSING=sync without the sync-post-processing extra fails with a clear message."""

from __future__ import annotations

import pytest
from payment_api.adapters import inline_post_processing as inline
from ticketing_events.topics import PAYMENT_SUCCESS, ConsumerGroup


def test_the_steps_are_the_registry_groups_that_act_on_a_payment():
    assert [g.service for g in inline.GROUPS] == [
        "ranking-consumer",
        "dataplatform-consumer",
        "cleanup-consumer",
        "compensator",
    ]


def test_missing_extra_names_the_extra_and_the_package(monkeypatch):
    missing = ConsumerGroup("no-such-group", "no-such-consumer", (PAYMENT_SUCCESS,))
    monkeypatch.setattr(inline, "GROUPS", [*inline.GROUPS, missing])
    with pytest.raises(
        inline.MissingExtra, match=r"'sync-post-processing' extra.*no-such-consumer"
    ):
        inline.require_extra()
