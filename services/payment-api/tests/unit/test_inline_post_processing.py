"""POST_PROCESSING=sync without the sync-post-processing extra fails with a clear message."""

from __future__ import annotations

import pytest
from payment_api.adapters import inline_post_processing as inline


def test_missing_extra_names_the_extra_and_the_package(monkeypatch):
    monkeypatch.setattr(inline, "PACKAGES", ("ranking_consumer", "no_such_consumer"))
    with pytest.raises(
        inline.MissingExtra, match=r"'sync-post-processing' extra.*no_such_consumer"
    ):
        inline.require_extra()
