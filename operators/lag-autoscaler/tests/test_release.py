"""`lag-autoscaler release`: the finalizer patch and the command line, without an API server.

The pre-delete hook against a real API server is for the control-plane tests.
"""

from __future__ import annotations

from typing import Any

import kopf
import pytest
from lag_autoscaler.handlers import configure
from lag_autoscaler.main import parser
from lag_autoscaler.release import FINALIZER, finalizers_patch


def test_the_finalizer_is_the_one_the_operator_sets() -> None:
    settings = kopf.OperatorSettings()
    configure(settings=settings)  # the operator's startup handler
    assert FINALIZER == settings.persistence.finalizer == "kopf.zalando.org/KopfFinalizerMarker"


def test_the_patch_takes_only_kopfs_finalizer_off() -> None:
    obj = {"metadata": {"resourceVersion": "7", "finalizers": ["example.com/keep", FINALIZER]}}
    assert finalizers_patch(obj) == {
        "metadata": {"finalizers": ["example.com/keep"], "resourceVersion": "7"}
    }
    only = {"metadata": {"resourceVersion": "8", "finalizers": [FINALIZER]}}
    assert finalizers_patch(only) == {"metadata": {"finalizers": [], "resourceVersion": "8"}}


@pytest.mark.parametrize(
    "metadata", [{}, {"finalizers": None}, {"finalizers": ["example.com/keep"]}]
)
def test_no_patch_without_kopfs_finalizer(metadata: dict[str, Any]) -> None:
    assert finalizers_patch({"metadata": {"resourceVersion": "1", **metadata}}) is None


def test_release_takes_one_namespace() -> None:
    assert parser().parse_args(["release", "-n", "ticketing"]).namespace == "ticketing"
    with pytest.raises(SystemExit):
        parser().parse_args(["release"])
