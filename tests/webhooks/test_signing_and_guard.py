"""What a receiver checks (the signature), and where a tenant's URL may not lead (the SSRF guard)."""

from __future__ import annotations

import httpx
import pytest

from parley.config import Settings
from parley.webhooks.guard import UrlPolicy, UrlRefused, guarded_client
from parley.webhooks.signing import SignatureError, sign, verify
from tests.webhooks.receiver import Receiver, receiving

SECRET = "whsec_test"


def test_a_signature_verifies_for_its_body_only_and_only_while_fresh() -> None:
    body = b'{"type":"call.ended"}'
    header = sign(SECRET, body, timestamp=1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert verify(SECRET, header, body, now=1_700_000_100) == 1_700_000_000
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, header, body + b" ", now=1_700_000_100)
    with pytest.raises(SignatureError, match="does not match"):
        verify("another secret", header, body, now=1_700_000_100)
    with pytest.raises(SignatureError, match="tolerance"):
        verify(SECRET, header, body, now=1_700_000_000 + 301)  # a replay, five minutes on
    with pytest.raises(SignatureError):
        verify(SECRET, None, body)
    with pytest.raises(SignatureError, match="timestamp"):
        verify(SECRET, "v1=abc", body)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://api.example.com/hook", "https://"),
        ("ftp://api.example.com/hook", "https://"),
        ("https://user:pw@api.example.com/hook", "credentials"),
        ("https://127.0.0.1/hook", "not a public address"),
        ("https://169.254.169.254/latest/meta-data", "not a public address"),
        ("https://[::1]:8443/", "not a public address"),
        ("https://[::ffff:10.0.0.1]/", "not a public address"),
        ("https:///no-host", "no host"),
    ],
)
def test_tenant_urls_are_https_to_public_hosts(url: str, why: str) -> None:
    with pytest.raises(UrlRefused, match=why):
        UrlPolicy().check_url(url)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://example.com/x\r\nHost: evil", "control character"),  # urlsplit drops CR LF; httpx refuses
        ("https://example.com/\tx", "control character"),
        ("https://example.com/x\x7f", "control character"),
        ("https://exa mple.com/", "space"),
        ("https://example.com/\u00a0", "space"),
        ("https://xn--/", "not a valid URL"),  # an A-label httpx cannot decode
        ("https://xn--a.com/", "not a valid URL"),
        ("https://127.1/", "not a public address"),  # what inet_aton (so getaddrinfo) reads as 127.0.0.1
        ("https://2130706433/", "not a public address"),
        ("https://0x7f000001/", "not a public address"),
        ("https://0x7f.1/", "not a public address"),
        ("https://10.1/", "not a public address"),
        ("https://127.0.0.1./", "not a public address"),
        ("https://[64:ff9b::7f00:1]/", "not a public address"),  # NAT64 of 127.0.0.1
        ("https://[64:ff9b::a9fe:a9fe]/", "not a public address"),  # NAT64 of the metadata address
        ("https://[2002:7f00:1::]/", "not a public address"),  # 6to4 of 127.0.0.1
        ("https://[2002:c0a8:101::1]/", "not a public address"),  # 6to4 of 192.168.1.1
    ],
)
def test_urls_httpx_cannot_send_and_disguised_private_addresses_are_refused(url: str, why: str) -> None:
    with pytest.raises(UrlRefused, match=why):
        UrlPolicy().check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/parley?x=1#f",
        "https://exämple.com/hook",  # IDNA-encoded by the client
        "https://134744072/",  # 8.8.8.8 as one number: public
        "https://[64:ff9b::808:808]/",  # NAT64 of a public address
        "https://[2002:808:808::1]/",  # 6to4 of a public address
        "https://[2001:4860:4860::8888]/",
    ],
)
def test_urls_of_unusual_but_public_form_pass(url: str) -> None:
    assert UrlPolicy().check_url(url) == url


def test_nat64_and_6to4_addresses_of_private_ones_are_refused_when_dialed() -> None:
    for address in ("64:ff9b::a00:1", "2002:a9fe:a9fe::1", "64:ff9b:1::a00:1"):
        with pytest.raises(UrlRefused, match="permitted address") as refused:
            UrlPolicy().check_addresses("nat64.example", [address])
        assert address not in str(refused.value), "the operator's log has it, the tenant does not"
    assert UrlPolicy().check_addresses("nat64.example", ["64:ff9b::808:808"]) == ["64:ff9b::808:808"]


def test_the_operator_may_allow_http_and_named_private_hosts() -> None:
    policy = UrlPolicy.from_settings(
        Settings(webhook_allow_http=True, webhook_allow_private_hosts=["127.0.0.1", "Billing.internal"])
    )
    assert policy.check_url("http://127.0.0.1:9000/x") == "http://127.0.0.1:9000/x"
    assert policy.check_addresses("billing.internal", ["10.1.2.3"]) == ["10.1.2.3"]
    with pytest.raises(UrlRefused) as refused:
        policy.check_addresses("other.internal", ["10.9.9.9"])
    assert "10.9.9.9" in refused.value.detail and "10.9.9.9" not in str(refused.value)
    with pytest.raises(UrlRefused, match="not a public"):
        policy.check_url("http://10.0.0.1/")
    assert UrlPolicy().check_addresses("example.com", ["93.184.215.14"]) == ["93.184.215.14"]
    with pytest.raises(UrlRefused):  # one private answer among public ones is enough to refuse
        UrlPolicy().check_addresses("rebind.example", ["93.184.215.14", "127.0.0.1"])


async def test_a_name_that_resolves_to_loopback_is_refused_when_connecting() -> None:
    """``localhost`` passes the URL's form check; the guard refuses the address it resolves to."""
    async with receiving(Receiver()) as receiver:
        port = receiver.url.rsplit(":", 1)[1]
        url = f"http://localhost:{port}/hook"
        open_policy = UrlPolicy(allow_http=True, allowed_ports=frozenset({int(port)}))
        open_policy.check_url(url)
        async with guarded_client(open_policy, 5.0) as client:
            with pytest.raises(httpx.ConnectError, match="not resolve to a permitted address"):
                await client.post(url, content=b"{}")
        allowed = UrlPolicy(allow_http=True, allow_private_hosts=frozenset({"localhost"}))
        async with guarded_client(allowed, 5.0) as client:
            assert (await client.post(url, content=b"{}")).status_code == 200
    assert len(receiver.received) == 1, "the refused request never left"


async def test_redirects_are_not_followed() -> None:
    """A redirect could point anywhere, past the check: the answer is returned as it is."""
    receiver = Receiver(statuses=[302])
    async with receiving(receiver):
        policy = UrlPolicy(allow_http=True, allow_private_hosts=frozenset({"127.0.0.1"}))
        async with guarded_client(policy, 5.0) as client:
            response = await client.get(receiver.url + "/go")
    assert response.status_code == 302 and len(receiver.received) == 1
