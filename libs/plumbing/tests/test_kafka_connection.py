"""Every Kafka client takes its options from the settings' connection: TLS and SASL or plain."""

from __future__ import annotations

import ssl

import faust
import pytest

from studyshare.plumbing.kafka_connection import KafkaConnection, kafka_connection
from studyshare.plumbing.settings import ServiceSettings


def test_the_local_broker_is_plain_text_on_loopback() -> None:
    options = ServiceSettings().kafka.client_options()
    assert options == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}
    assert ServiceSettings().kafka.faust_credentials() is None
    assert kafka_connection("h:1") == KafkaConnection("h:1")


def test_kubernetes_connects_over_tls_as_the_services_own_user() -> None:
    settings = ServiceSettings(
        kafka_bootstrap="studyshare-kafka-bootstrap:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_username="studyshare-share",
        kafka_password="scram-password",
    )
    options = settings.kafka.client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "studyshare-share"
    assert options["sasl_plain_password"] == "scram-password"
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    credentials = settings.kafka.faust_credentials()
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.username == "studyshare-share"
    assert "scram-password" not in repr(settings)


def test_sasl_without_a_user_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="KAFKA_USERNAME"):
        ServiceSettings(kafka_security_protocol="SASL_SSL")


def test_production_refuses_a_plain_text_broker() -> None:
    with pytest.raises(ValueError, match="SASL_SSL"):
        ServiceSettings(environment="production", kafka_enable_idempotence=True)
