"""The private 3-node RabbitMQ cluster for the tests that take broker nodes away (issue 11): the
harness's RabbitCluster (shadowline.harness.rabbit_cluster), and its pytest fixtures.

The cluster is made once per test module (`rabbit_cluster`, module scope) and every test that
asks for `broker_cluster` gets it whole: all three nodes running and clustered, anything an
earlier test killed, stopped or paused brought back first (`heal`). A test module uses them as

    from tests.e2e import rabbit_cluster as rabbit_cluster_fixtures
    rabbit_cluster = rabbit_cluster_fixtures.rabbit_cluster
    broker_cluster = rabbit_cluster_fixtures.broker_cluster

and gives its processes `broker_cluster.urls(first)` as SHADOWLINE_AMQP_URL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from shadowline.harness.rabbit import rabbitmq_problem
from shadowline.harness.rabbit_cluster import CONFIG, NODES, TICKTIME, RabbitCluster

__all__ = [
    "CONFIG",
    "NODES",
    "TICKTIME",
    "RabbitCluster",
    "broker_cluster",
    "rabbit_cluster",
    "require_rabbitmq_cluster",
]


def require_rabbitmq_cluster() -> None:
    problem = rabbitmq_problem()
    if problem is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"a private RabbitMQ cluster cannot run: {problem}")
    pytest.skip(f"a private RabbitMQ cluster cannot run: {problem}")


@pytest.fixture(scope="module")
def rabbit_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    """One private 3-node cluster for the module; killed and left behind in its temporary
    directory afterwards (logs included), also when a test fails."""
    require_rabbitmq_cluster()
    cluster = RabbitCluster(tmp_path_factory.mktemp("rabbitmq-cluster"))
    try:
        cluster.start()
        print(f"\n3-node RabbitMQ cluster started and joined in {cluster.started_in:.1f}s")
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def broker_cluster(rabbit_cluster: RabbitCluster) -> RabbitCluster:
    """The module's cluster, whole: every node running and clustered when the test begins."""
    rabbit_cluster.heal()
    return rabbit_cluster
