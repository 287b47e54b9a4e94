"""``lag-autoscaler release -n NS``: delete every ``ConsumerLagAutoscaler`` in NS, operator or not.

kopf puts its finalizer on each object (its timers need one) and takes it off only while it
runs, so an object deleted after the operator would stay Terminating. The chart runs this as
a pre-delete hook, before ``helm uninstall`` deletes the operator.
"""

from __future__ import annotations

from typing import Any, cast

import kopf
import structlog
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from lag_autoscaler.spec import GROUP, PLURAL, VERSION

# The operator keeps kopf's default (handlers.py changes no persistence setting).
FINALIZER = kopf.OperatorSettings().persistence.finalizer
ATTEMPTS = 5

log = structlog.get_logger("lag_autoscaler.release")


class ReleaseFailed(Exception):
    """kopf's finalizer stayed on an object through every attempt."""


def finalizers_patch(obj: dict[str, Any]) -> dict[str, Any] | None:
    """A merge patch taking kopf's finalizer off, or None when it is not there.

    It names the object's resourceVersion, so a concurrent change (kopf releasing the object
    itself) makes it fail with 409 rather than overwrite the list.
    """
    meta = obj["metadata"]
    finalizers = meta.get("finalizers") or []
    if FINALIZER not in finalizers:
        return None
    others = [f for f in finalizers if f != FINALIZER]
    return {"metadata": {"finalizers": others, "resourceVersion": meta["resourceVersion"]}}


def release(api: client.CustomObjectsApi, namespace: str) -> None:
    """Delete every object of the namespace and take kopf's finalizer off."""
    listing = cast(
        dict[str, Any], api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    )
    names = [obj["metadata"]["name"] for obj in listing["items"]]
    for name in names:
        # Delete first: the API server refuses new finalizers on an object being deleted, so
        # a running operator cannot put kopf's back once it is off.
        _unless_gone(api.delete_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name)
        _take_finalizer_off(api, namespace, name)
        log.info("released", namespace=namespace, name=name)


def _take_finalizer_off(api: client.CustomObjectsApi, namespace: str, name: str) -> None:
    for _ in range(ATTEMPTS):
        obj = _unless_gone(
            api.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
        )
        patch = finalizers_patch(obj) if obj is not None else None
        if patch is None:
            return
        try:
            api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch)
            return
        except ApiException as exc:
            if exc.status == 404:
                return
            if exc.status != 409:
                raise
    raise ReleaseFailed(f"{PLURAL}/{name} in {namespace}: {FINALIZER} still set")


def _unless_gone(call: Any, *args: str) -> Any:
    """The call's result, or None when the object is gone (404)."""
    try:
        return call(*args)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
