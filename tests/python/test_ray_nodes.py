"""keyway.ray's per-node proxies on a multi-node Ray cluster on one machine (ray.cluster_utils.Cluster): every
node's tasks are served by the proxy on their own node."""

import boto3
import pytest
import ray
from ray.cluster_utils import Cluster
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from conftest import start_moto


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    c.add_node(num_cpus=1)
    ray.init(address=c.address, log_to_driver=False)
    c.wait_for_nodes()
    yield c
    ray.shutdown()
    c.shutdown()


@pytest.fixture()
def aws(tmp_path):
    """A moto server holding app/token and app/late, and a keyway.ray operator for it."""
    import keyway.ray as kr

    proc, moto = start_moto(tmp_path)
    client = boto3.client("secretsmanager", endpoint_url=moto, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_secret(Name="app/token", SecretString="per-node-value")
    client.create_secret(Name="app/late", SecretString="late-node-value")
    try:
        yield kr.AWSRaySecretOperator(endpoint_url=moto, region_name="us-east-1",
                                      aws_access_key_id="testing", aws_secret_access_key="testing")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_each_node_is_served_by_its_own_proxy(cluster, aws):
    import keyway.ray as kr

    proxies = kr.start_node_proxies(aws)
    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    assert sorted(proxies) == sorted(nodes) and len(nodes) == 3
    assert all(ray.get(proxies[n].node_id.remote()) == n for n in nodes), "each proxy is pinned to its node"

    @ray.remote(num_cpus=0)
    def read():
        import keyway.ray as kr_in_task

        here = ray.get_runtime_context().get_node_id()
        proxy_node = ray.get(kr_in_task.node_proxy().node_id.remote())
        return here, proxy_node, kr_in_task.get_secret("app/token").value()

    results = ray.get([
        read.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=n, soft=False)).remote()
        for n in nodes
    ])
    for node, (here, proxy_node, value) in zip(nodes, results):
        assert here == node and proxy_node == node and value == "per-node-value"
    # Started again, the named proxies are found, not duplicated.
    again = kr.start_node_proxies(aws)
    assert {n: a._actor_id for n, a in again.items()} == {n: a._actor_id for n, a in proxies.items()}
    for actor in proxies.values():
        ray.kill(actor)


def test_a_node_that_joins_later_starts_its_own_proxy_on_first_use(cluster, aws):
    """Autoscaled clusters gain nodes after the driver started the proxies: a task there gets a proxy on its own
    node, started with the operator and TTL the others were, instead of an error."""
    import keyway.ray as kr

    first = kr.start_node_proxies(aws, default_ttl=-1, prefix="keyway-late")
    late = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    new = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeID"] not in first)

    @ray.remote(num_cpus=0)
    def read():
        import keyway.ray as kr_in_task

        proxy = kr_in_task.node_proxy("keyway-late")
        here = ray.get_runtime_context().get_node_id()
        return here, ray.get(proxy.node_id.remote()), kr_in_task.get_secret("app/late", prefix="keyway-late").value()

    pinned = read.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=new, soft=False))
    here, proxy_node, value = ray.get(pinned.remote())
    assert (here, proxy_node, value) == (new, new, "late-node-value")
    # Once started, it is found, not started again.
    assert ray.get(pinned.remote()) == (new, new, "late-node-value")
    assert len([n for n in ray.util.list_named_actors() if n.startswith("keyway-late-")]) == len(first) + 1
    for actor in list(first.values()) + [ray.get_actor(f"keyway-late-{new}")]:
        ray.kill(actor)
    cluster.remove_node(late)
