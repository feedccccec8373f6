"""How clients connect to a real cluster: TLS and SASL from settings (alive/kafka.py)."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.abc import AbstractTokenProvider
from pydantic import ValidationError

from alive.kafka import (
    BACKGROUND_FETCH_MAX_WAIT_MS,
    FileTokenProvider,
    KafkaTokenError,
    connection_options,
    make_consumer,
)
from alive.settings import KafkaSettings, ServiceSettings
from alive_tools.signing_chain import ensure_dev_chain


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
        KafkaSettings(security_protocol="SASL_SSL")
    with pytest.raises(ValidationError, match="PLAIN needs sasl_username, sasl_password"):
        KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN")
    with pytest.raises(ValidationError, match="SCRAM-SHA-512 needs sasl_username"):
        KafkaSettings(
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_oauth_token_path=Path("/var/run/secrets/kafka/token"),  # not for SCRAM
        )


def test_oauthbearer_without_a_token_file_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="OAUTHBEARER needs sasl_oauth_token_path"):
        KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER")
    with pytest.raises(ValidationError, match="OAUTHBEARER needs sasl_oauth_token_path"):
        KafkaSettings(  # a user and password do not stand in for the token
            security_protocol="SASL_SSL",
            sasl_mechanism="OAUTHBEARER",
            sasl_username="alive-generator",
            sasl_password="s3cret",  # type: ignore[arg-type]
        )


async def test_oauthbearer_reaches_every_client_with_a_token_from_the_file(
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("eyJhbGciOi.first.sig\n")
    kafka = KafkaSettings(
        bootstrap_servers="kafka-0:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="OAUTHBEARER",
        sasl_oauth_token_path=token_file,
    )
    options = connection_options(ServiceSettings(kafka=kafka))
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "OAUTHBEARER"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    provider = options["sasl_oauth_token_provider"]
    assert isinstance(provider, AbstractTokenProvider)
    assert not {"sasl_plain_username", "sasl_plain_password"} & set(options)
    assert await provider.token() == "eyJhbGciOi.first.sig"
    assert "first" not in repr(provider)  # the token is never in reprs
    AIOKafkaProducer(**options)  # aiokafka checks the provider's type itself


async def test_the_token_provider_rereads_the_file_so_rotation_needs_no_restart(
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("token-1")
    provider = FileTokenProvider(token_file)
    assert await provider.token() == "token-1"
    token_file.write_text("token-2\n")  # the sidecar rotated it in place
    assert await provider.token() == "token-2"
    (tmp_path / "token-3").write_text("token-3")
    (tmp_path / "token-3").replace(token_file)  # or swapped the file (atomic rename)
    assert await provider.token() == "token-3"


async def test_the_token_provider_fails_clearly_on_an_empty_or_missing_file(
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(" \n")
    with pytest.raises(KafkaTokenError, match=re.escape(f"token file {token_file} is empty")):
        await FileTokenProvider(token_file).token()
    with pytest.raises(KafkaTokenError, match="cannot read the OAUTHBEARER token file"):
        await FileTokenProvider(tmp_path / "absent").token()


async def test_consumers_hold_empty_fetches_as_the_profile_or_a_setting_says() -> None:
    def fetch_wait(settings: ServiceSettings) -> int:
        consumer = make_consumer(settings, "group", "client")
        return int(consumer._fetch_max_wait_ms)  # what its fetches ask the broker for

    assert fetch_wait(ServiceSettings(profile="embedded")) == 100
    assert fetch_wait(ServiceSettings(profile="production")) == 500
    explicit = ServiceSettings(profile="production", kafka=KafkaSettings(fetch_max_wait_ms=50))
    assert fetch_wait(explicit) == 50
    background = make_consumer(
        ServiceSettings(profile="embedded"), None, "c", BACKGROUND_FETCH_MAX_WAIT_MS
    )
    assert background._fetch_max_wait_ms == BACKGROUND_FETCH_MAX_WAIT_MS == 500
