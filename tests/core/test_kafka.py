"""How clients connect to a real cluster: TLS and SASL from settings (alive/kafka.py)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from alive.kafka import connection_options
from alive.settings import KafkaSettings, ServiceSettings
from services.provenance.certs import ensure_dev_chain


async def test_sasl_over_tls_reaches_every_client(tmp_path: Path) -> None:
    ca = ensure_dev_chain(tmp_path / "ca").root_cert
    kafka = KafkaSettings(
        bootstrap_servers="kafka-0:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="alive-generator",
        sasl_password="s3cret",  # type: ignore[arg-type]
        ssl_cafile=ca,
    )
    options = connection_options(ServiceSettings(kafka=kafka))
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "alive-generator"
    assert options["sasl_plain_password"] == "s3cret"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert "s3cret" not in repr(kafka)  # a secret: never in logs or reprs
    AIOKafkaProducer(**options)  # the options are the client's own keyword arguments


def test_the_embedded_default_is_plaintext() -> None:
    options = connection_options(ServiceSettings())
    assert options == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}


def test_sasl_without_credentials_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="needs sasl_mechanism"):
        KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN")
