"""One proxy per node, each pinned there, found by name: secret values then travel from the proxy to callers on the
same node only, never across the network inside Ray's RPC. A node that joins later (autoscaled) starts its own
proxy alike on first use, from the recipe another node's proxy keeps."""

from __future__ import annotations

from typing import Any, Dict, cast

import ray

from keyway.ray._operators import RaySecretOperator
from keyway.ray._proxy import THREADS, _Proxy
from keyway.ray._secret import RaySecret

_PROXY_PREFIX = "keyway-secrets"


def _node_proxy_name(prefix: str, node_id: str) -> str:
    return f"{prefix}-{node_id}"


class _NodeProxy(_Proxy):
    def __init__(self, ray_secret_operator: RaySecretOperator, default_ttl=-1) -> None:
        # What this proxy was started with, as Ray stored it (before initialize() builds anything), so that a
        # node that joins later can start its own proxy alike (see node_proxy).
        self.__recipe = ray.cloudpickle.dumps((ray_secret_operator, default_ttl))
        super().__init__(ray_secret_operator, default_ttl=default_ttl)

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def recipe(self) -> bytes:
        return self.__recipe


_NodeProxyActor: Any = ray.remote(max_concurrency=THREADS)(_NodeProxy)  # type: ignore[call-overload]


def _start_on(node_id: str, operator: RaySecretOperator, default_ttl, prefix: str):
    """The named proxy pinned to ``node_id``: started, or found when it runs already (also when another caller
    starts it at the same moment)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return _NodeProxyActor.options(
        name=_node_proxy_name(prefix, node_id),
        get_if_exists=True,
        lifetime="detached",
        num_cpus=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
    ).remote(operator, default_ttl=default_ttl)


def start_node_proxies(operator: RaySecretOperator, default_ttl=-1, prefix: str = _PROXY_PREFIX) -> Dict[str, Any]:
    """Starts (or finds) one named proxy on every alive node, pinned there; returns {node_id: actor}.

    Call it from the driver once; ``get_secret`` then reaches the proxy on the caller's own node, and on a node
    that joined since (an autoscaled one), starts that node's proxy alike on first use. The operator is stored by
    Ray as a constructor argument: give it no credentials (use the nodes' identity)."""
    return {
        node["NodeID"]: _start_on(node["NodeID"], operator, default_ttl, prefix)
        for node in ray.nodes()
        if node.get("Alive")
    }


def node_proxy(prefix: str = _PROXY_PREFIX):
    """The proxy actor on the caller's node. On a node without one yet (it joined after ``start_node_proxies``,
    as autoscaled nodes do), starts it with the operator and TTL another node's proxy was started with."""
    node_id = ray.get_runtime_context().get_node_id()
    name = _node_proxy_name(prefix, node_id)
    try:
        return ray.get_actor(name)
    except ValueError:
        pass
    for other in ray.util.list_named_actors():
        if not other.startswith(f"{prefix}-") or other == name:
            continue
        try:
            recipe = cast("bytes", ray.get(ray.get_actor(other).recipe.remote()))
        except (ValueError, AttributeError, ray.exceptions.RayActorError):
            continue  # gone with its node, or another actor of a name like theirs
        operator, default_ttl = ray.cloudpickle.loads(recipe)
        return _start_on(node_id, operator, default_ttl, prefix)
    raise RuntimeError(
        f"no Keyway secrets proxy on node {node_id} or any other: call keyway.ray.start_node_proxies(...) from the "
        f"driver")


def get_secret(secret_name: str, ttl=None, prefix: str = _PROXY_PREFIX, **kwargs) -> RaySecret:
    """``get_secret`` through the proxy on the caller's own node."""
    return ray.get(node_proxy(prefix).get_secret.remote(secret_name, ttl=ttl, **kwargs))
