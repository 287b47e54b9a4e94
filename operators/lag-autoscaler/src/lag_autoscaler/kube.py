"""Adapter: a Deployment's replicas through its scale subresource (the official client, sync).

The kopf handler runs these calls in a thread, with the Kafka reads.
"""

from __future__ import annotations

import os

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError


class TargetUnavailable(Exception):
    """The Deployment is missing, or the API server refused or did not answer."""


class DeploymentScaleTarget:
    def __init__(self, api: client.ApiClient) -> None:
        self._apps = client.AppsV1Api(api)

    def current_replicas(self, namespace: str, name: str) -> int:
        """The replicas asked for (``spec.replicas`` of the scale subresource)."""
        try:
            scale = self._apps.read_namespaced_deployment_scale(name, namespace)
        except (ApiException, HTTPError) as exc:
            raise TargetUnavailable(_describe(exc, namespace, name)) from exc
        return int(scale.spec.replicas or 0) if scale.spec else 0

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        body = {"spec": {"replicas": replicas}}
        try:
            self._apps.patch_namespaced_deployment_scale(name, namespace, body)
        except (ApiException, HTTPError) as exc:
            raise TargetUnavailable(_describe(exc, namespace, name)) from exc


def _describe(exc: Exception, namespace: str, name: str) -> str:
    if isinstance(exc, ApiException):
        return f"deployment {namespace}/{name}: {exc.status} {exc.reason}"
    return f"deployment {namespace}/{name}: {exc}"


def api_client() -> client.ApiClient:
    """In a pod, the service account; elsewhere the kubeconfig (``KUBECONFIG`` or ~/.kube)."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
        return client.ApiClient()
    return config.new_client_from_config()
