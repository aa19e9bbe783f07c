"""A private RabbitMQ node for tests that stop and restart the broker: the harness's
(shadowline.harness.rabbit), under the names the tests have always imported from here."""

from shadowline.harness.rabbit import SCRIPTS, RabbitNode, rabbitmq_problem

__all__ = ["SCRIPTS", "RabbitNode", "rabbitmq_problem"]
