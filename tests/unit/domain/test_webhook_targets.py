"""Which addresses a webhook may reach, and what the allow-list lets through."""

from __future__ import annotations

import ipaddress

import pytest

from batchyard.domain.webhooks import (
    WebhookAllowList,
    is_internal_address,
    literal_address,
    refused_addresses,
    webhook_host,
)

INTERNAL = ["127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.5.4", "192.168.1.1",
            "169.254.169.254", "0.0.0.0", "100.64.0.1", "224.0.0.1", "240.0.0.1",
            "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "ff02::1",
            "::ffff:127.0.0.1", "::ffff:169.254.169.254", "2002:7f00:1::", "64:ff9b::a00:1"]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("text", INTERNAL)
def test_internal_addresses_are_refused(text: str) -> None:
    assert is_internal_address(ipaddress.ip_address(text))


@pytest.mark.parametrize("text", PUBLIC)
def test_public_addresses_are_fine(text: str) -> None:
    assert not is_internal_address(ipaddress.ip_address(text))


def test_the_allow_list_takes_hosts_addresses_and_networks() -> None:
    allow = WebhookAllowList.parse(["Hooks.Internal.", "10.20.0.0/16", "[::1]", " "])
    assert allow.allows_host("hooks.internal") and not allow.allows_host("other.internal")
    ten = ipaddress.ip_address("10.20.3.4")
    assert refused_addresses("x", [ten], allow) == []
    assert refused_addresses("x", [ipaddress.ip_address("10.21.0.1")], allow) != []
    assert refused_addresses("x", [ipaddress.ip_address("::1")], allow) == []
    # a named host is allowed whatever it resolves to
    assert refused_addresses("hooks.internal", [ipaddress.ip_address("127.0.0.1")], allow) == []


def test_one_internal_address_among_public_ones_refuses_the_host() -> None:
    addresses = [ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("127.0.0.1")]
    assert refused_addresses("x", addresses, WebhookAllowList()) == [addresses[1]]


@pytest.mark.parametrize(("url", "expected"), [
    ("http://example.com/hook", ("example.com", 80)),
    ("https://example.com:8443/h", ("example.com", 8443)),
    ("http://[::1]:9000/", ("::1", 9000)),
])
def test_webhook_host(url: str, expected: tuple[str, int]) -> None:
    assert webhook_host(url) == expected


@pytest.mark.parametrize("url", ["ftp://example.com/", "http:///nohost", "/relative",
                                 "http://user:pw@example.com/"])
def test_webhook_host_refuses_what_is_not_a_plain_http_url(url: str) -> None:
    with pytest.raises(ValueError):
        webhook_host(url)


def test_literal_address() -> None:
    assert literal_address("[::1]") == ipaddress.ip_address("::1")
    assert literal_address("example.com") is None
