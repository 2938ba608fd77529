"""Webhooks reach public addresses only (no SSRF into the workspace's own network): IP literals
refused when saved (API and page, the `url` field named), host names resolved and checked at
each attempt (refused without connecting, failed at once), the checked address is the one
connected to (no DNS rebinding; https still verifies the name), and the settings that allow
private addresses: WEBHOOK_ALLOW_PRIVATE, WEBHOOK_ALLOWED_HOSTS."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from mlworkspace.errors import InvalidInput
from notifications import delivery as sender
from notifications import services
from notifications.models import Delivery, Webhook

try:  # only to make certificates for the https test (skipped without it)
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError:  # pragma: no cover
    x509 = None

from .conftest import Receiver

API = "/api/ml-development/webhooks"
PAGE = "/model-development/notifications"
HINT = "set WEBHOOK_ALLOW_PRIVATE or WEBHOOK_ALLOWED_HOSTS"

# (the URL, what its host is): every kind of non-public address, as a user could type it.
NON_PUBLIC = [
    ("http://127.0.0.1:8000/hook", "127.0.0.1, a loopback address"),
    ("http://10.0.0.5/hook", "10.0.0.5, a private address"),
    ("http://172.16.3.4/hook", "172.16.3.4, a private address"),
    ("http://192.168.1.20/hook", "192.168.1.20, a private address"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254, a link-local address"),
    ("http://224.0.0.1/hook", "224.0.0.1, a multicast address"),
    ("http://240.0.0.1/hook", "240.0.0.1, a reserved address"),
    ("http://0.0.0.0:8000/hook", "0.0.0.0, an unspecified address"),
    ("http://100.64.0.1/hook", "100.64.0.1, a non-public address"),
    ("http://[::1]:8000/hook", "::1, a loopback address"),
    ("http://[::]/hook", "::, an unspecified address"),
    ("http://[fe80::1]/hook", "fe80::1, a link-local address"),
    ("http://[fd00::5]/hook", "fd00::5, a private address"),
    ("http://[ff02::1]/hook", "ff02::1, a multicast address"),
    ("http://[::ffff:10.0.0.5]/hook", "::ffff:10.0.0.5, a private address"),  # IPv4-mapped
    ("https://[::ffff:169.254.169.254]/", "::ffff:169.254.169.254, a link-local address"),
    ("http://2130706433/hook", "127.0.0.1, a loopback address"),  # what the resolver reads as IPv4
    ("http://127.1/hook", "127.0.0.1, a loopback address"),
    ("http://0x7f.0.0.1/hook", "127.0.0.1, a loopback address"),
]


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _page(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def public_only(webhook_settings):
    """The default policy (webhook_settings allows private addresses for the loopback receiver)."""
    webhook_settings.WEBHOOK_ALLOW_PRIVATE = False
    webhook_settings.WEBHOOK_ALLOWED_HOSTS = []
    return webhook_settings


@pytest.fixture
def no_dns(monkeypatch):
    """Any lookup fails the test: saving a webhook must not resolve its host."""

    def getaddrinfo(*args, **kwargs):
        raise AssertionError(f"resolved {args[0]!r}")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


class FakeDNS:
    """socket.getaddrinfo for the names in `answers` (each a list of answers: one per lookup,
    the last repeated), the real one for anything else; records the names looked up."""

    def __init__(self, monkeypatch, answers: dict[str, list[list[str]]]):
        self.answers = {name: list(seq) for name, seq in answers.items()}
        self.lookups: list[str] = []
        self.real = socket.getaddrinfo
        monkeypatch.setattr(socket, "getaddrinfo", self)

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
        if host not in self.answers:
            return self.real(host, port, family, type, proto, flags)
        self.lookups.append(host)
        answers = self.answers[host]
        ips = answers.pop(0) if len(answers) > 1 else answers[0]
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, port, 0, 0))
            if ipaddress.ip_address(ip).version == 6
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
            for ip in ips
        ]


@pytest.fixture
def connects(monkeypatch) -> list:
    """Every socket connect of the test, recorded; only loopback is really connected (anything
    else is refused here, so no test touches the network)."""
    made = []
    real = socket.socket.connect

    def connect(self, address):
        made.append(address[:2])
        if not ipaddress.ip_address(address[0]).is_loopback:
            raise ConnectionRefusedError(111, "Connection refused (test)")
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return made


def _hook(url, world) -> Webhook:
    return services.webhook_create(user=None, name="hook", url=url, recipe=world.firm)


def _delivery(webhook, world, at) -> Delivery:
    assert services.notify("alert.opened", recipe=world.firm, payload={"alert": "mape"}, at=at) == 1
    return Delivery.objects.get(webhook=webhook)


# --------------------------------------------------------------------------- when saved


@pytest.mark.django_db
@pytest.mark.parametrize("url, what", NON_PUBLIC)
def test_the_api_refuses_a_non_public_ip_literal_naming_the_url(world, public_only, url, what):
    response = _api(world.a_lead).post(
        API, {"name": "x", "url": url, "client_id": world.client_a.pk}, format="json"
    )
    assert response.status_code == 400, response.json()
    [error] = response.json()["errors"]
    assert error["path"] == "/url"
    assert error["message"] == (
        f"points at {what}: webhooks may only reach public addresses (an admin may {HINT})"
    )
    assert Webhook.objects.count() == 0


@pytest.mark.django_db
def test_the_api_refuses_changing_the_url_to_a_private_address(world, public_only):
    hook = services.webhook_create(user=None, name="A", url="https://a.example.com", client=world.client_a)
    response = _api(world.a_lead).patch(f"{API}/{hook.pk}", {"url": "http://10.1.2.3/x"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "/url"
    assert response.json()["errors"][0]["message"].startswith("points at 10.1.2.3, a private address")
    hook.refresh_from_db()
    assert hook.url == "https://a.example.com"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url, what",
    [NON_PUBLIC[0], NON_PUBLIC[4], NON_PUBLIC[14]],  # loopback, cloud metadata, IPv4-mapped
)
def test_the_page_form_refuses_a_non_public_ip_literal_on_the_url_field(world, public_only, url, what):
    client = _page(world.a_lead)
    response = client.post(PAGE, {"name": "x", "url": url, "scope": f"client:{world.client_a.pk}"})
    assert response.status_code == 400
    assert response.context["form"].errors["url"] == [
        f"points at {what}: webhooks may only reach public addresses (an admin may {HINT})"
    ]
    assert Webhook.objects.count() == 0

    hook = services.webhook_create(user=None, name="A", url="https://a.example.com", client=world.client_a)
    response = client.post(f"{PAGE}/webhooks/{hook.pk}", {"name": "A", "url": url})
    assert response.status_code == 400
    assert response.context["edit_form"].errors["url"][0].startswith(f"points at {what}")
    hook.refresh_from_db()
    assert hook.url == "https://a.example.com"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "https://93.184.216.34/hook",  # a public IPv4 literal
        "https://[2001:4860:4860::8888]/hook",  # a public IPv6 literal
        "https://webhook.internal/hook",  # a name: judged when sent, not now (no lookup)
        "http://localhost:8000/hook",  # likewise
    ],
)
def test_public_literals_and_host_names_are_accepted_without_a_lookup(world, public_only, no_dns, url):
    response = _api(world.a_lead).post(
        API, {"name": "x", "url": url, "client_id": world.client_a.pk}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert Webhook.objects.get().url == url


@pytest.mark.django_db
def test_the_settings_allow_private_literals_when_saved(world, public_only):
    public_only.WEBHOOK_ALLOWED_HOSTS = ["10.0.0.9"]
    assert _hook("http://10.0.0.9/hook", world).url == "http://10.0.0.9/hook"  # listed
    with pytest.raises(InvalidInput) as refused:
        _hook("http://10.0.0.8/hook", world)  # not listed
    assert refused.value.errors[0]["path"] == "/url"
    public_only.WEBHOOK_ALLOWED_HOSTS = []
    public_only.WEBHOOK_ALLOW_PRIVATE = True
    assert _hook("http://127.0.0.1:8000/hook", world).url == "http://127.0.0.1:8000/hook"


# --------------------------------------------------------------------------- when sent


@pytest.mark.django_db
@pytest.mark.parametrize(
    "answer, said",
    [
        (["10.0.0.5"], "10.0.0.5, a private address"),
        (["169.254.169.254"], "169.254.169.254, a link-local address"),
        (["127.0.0.1"], "127.0.0.1, a loopback address"),
        (["93.184.216.34", "10.0.0.5"], "10.0.0.5, a private address"),  # any one address refuses
        (["::ffff:127.0.0.1"], "::ffff:127.0.0.1, a loopback address"),
    ],
)
def test_a_name_resolving_to_a_private_address_is_refused_without_connecting(
    receiver, public_only, world, monkeypatch, connects, answer, said
):
    port = receiver.server.server_address[1]
    dns = FakeDNS(monkeypatch, {"webhook.internal": [answer]})
    webhook = _hook(f"http://webhook.internal:{port}/hook", world)
    t0 = timezone.now()
    delivery = _delivery(webhook, world, t0)

    assert sender.deliver(delivery.pk, now=t0) == "failed"

    assert dns.lookups == ["webhook.internal"]
    assert connects == [] and receiver.requests == []
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code, delivery.next_attempt_at) == (
        "failed",
        1,
        None,
        None,
    )
    assert delivery.error == f"refused: webhook.internal resolves to {said}; {HINT}"
    # Final: not retried (WEBHOOK_MAX_ATTEMPTS is 3 here), the next ticks send nothing.
    assert sender.deliver_due(now=t0 + dt.timedelta(days=1)) == 0
    assert connects == []


@pytest.mark.django_db
def test_a_private_literal_saved_before_is_refused_when_sent(receiver, public_only, world, connects):
    public_only.WEBHOOK_ALLOW_PRIVATE = True
    webhook = _hook(receiver.url, world)  # saved while allowed (or before this rule existed)
    public_only.WEBHOOK_ALLOW_PRIVATE = False
    t0 = timezone.now()
    delivery = _delivery(webhook, world, t0)

    assert sender.deliver(delivery.pk, now=t0) == "failed"
    assert connects == [] and receiver.requests == []
    assert Delivery.objects.get(pk=delivery.pk).error == f"refused: 127.0.0.1, a loopback address; {HINT}"


@pytest.mark.django_db
@pytest.mark.parametrize("allow", ["WEBHOOK_ALLOW_PRIVATE", "WEBHOOK_ALLOWED_HOSTS"])
def test_the_settings_let_a_loopback_receiver_get_the_post(
    receiver, public_only, world, monkeypatch, connects, allow
):
    if allow == "WEBHOOK_ALLOW_PRIVATE":
        public_only.WEBHOOK_ALLOW_PRIVATE = True
    else:
        public_only.WEBHOOK_ALLOWED_HOSTS = ["Receiver.Internal"]  # compared without case
    port = receiver.server.server_address[1]
    dns = FakeDNS(monkeypatch, {"receiver.internal": [["127.0.0.1"]]})
    webhook = _hook(f"http://receiver.internal:{port}/hook", world)
    t0 = timezone.now()
    delivery = _delivery(webhook, world, t0)

    assert sender.deliver(delivery.pk, now=t0) == "delivered"

    [request] = receiver.requests
    assert request["headers"]["Host"] == f"receiver.internal:{port}"  # the name, not the address
    assert receiver.json()["id"] == delivery.pk
    assert dns.lookups == ["receiver.internal"] and connects == [("127.0.0.1", port)]


@pytest.mark.django_db
def test_an_allowed_host_does_not_allow_another_name(receiver, public_only, world, monkeypatch, connects):
    public_only.WEBHOOK_ALLOWED_HOSTS = ["receiver.internal"]
    port = receiver.server.server_address[1]
    FakeDNS(monkeypatch, {"other.internal": [["127.0.0.1"]]})
    webhook = _hook(f"http://other.internal:{port}/hook", world)
    t0 = timezone.now()
    delivery = _delivery(webhook, world, t0)

    assert sender.deliver(delivery.pk, now=t0) == "failed"
    assert connects == [] and receiver.requests == []


@pytest.mark.django_db
def test_the_checked_address_is_the_one_connected_to(receiver, public_only, world, monkeypatch, connects):
    """DNS rebinding: the name answers a public address to the check, then loopback. The
    request goes to the address that was checked, and the name is looked up once."""
    port = receiver.server.server_address[1]
    dns = FakeDNS(monkeypatch, {"rebind.example": [["93.184.216.34"], ["127.0.0.1"]]})
    webhook = _hook(f"http://rebind.example:{port}/hook", world)
    t0 = timezone.now()
    delivery = _delivery(webhook, world, t0)

    assert sender.deliver(delivery.pk, now=t0) == "retrying"  # the public address refused (test)

    assert dns.lookups == ["rebind.example"]
    assert connects == [("93.184.216.34", port)]
    assert receiver.requests == []
    delivery.refresh_from_db()
    assert delivery.error.startswith("connection failed:") and "refused" in delivery.error.lower()


@pytest.mark.django_db
def test_a_name_that_does_not_resolve_is_retried(public_only, world, monkeypatch, connects):
    def getaddrinfo(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    webhook = _hook("https://gone.example/hook", world)
    t0 = timezone.now()
    delivery = _delivery(webhook, world, t0)

    assert sender.deliver(delivery.pk, now=t0) == "retrying"  # DNS failures pass
    assert connects == []
    assert (
        Delivery.objects.get(pk=delivery.pk).error
        == "connection failed: [Errno -2] Name or service not known"
    )


# --------------------------------------------------------------------------- https, pinned


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A test CA and two server certificates it signs: one for receiver.internal, one for
    another name (paths of PEM files)."""
    if x509 is None:
        pytest.skip("needs the cryptography package to make test certificates")
    folder = tmp_path_factory.mktemp("tls")
    now = dt.datetime.now(dt.UTC)

    def name(text):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def pem(key):
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("test CA"))
        .issuer_name(name("test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files = {"ca": str(folder / "ca.pem")}
    for host in ("receiver.internal", "someone.else"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(host))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        path = folder / f"{host}.pem"
        path.write_bytes(pem(key) + cert.public_bytes(serialization.Encoding.PEM))
        files[host] = str(path)
    return files


@pytest.fixture
def tls_receiver(tls_files, request):
    """The loopback receiver behind TLS, with the certificate named by the test's parameter."""
    receiver = Receiver()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files[request.param])
    receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "tls_receiver, outcome",
    [("receiver.internal", "delivered"), ("someone.else", "retrying")],
    indirect=["tls_receiver"],
)
def test_https_to_a_pinned_address_verifies_the_host_name(
    tls_receiver, tls_files, outcome, public_only, world, monkeypatch, connects
):
    """Connected to the checked address, TLS still sends the name (SNI) and verifies the
    certificate against it: a certificate for another name is refused."""
    public_only.WEBHOOK_ALLOWED_HOSTS = ["receiver.internal"]
    make_context = ssl.create_default_context
    # The workers trust the system's CAs; here the test CA.
    monkeypatch.setattr(sender.ssl, "create_default_context", lambda: make_context(cafile=tls_files["ca"]))
    port = tls_receiver.server.server_address[1]
    dns = FakeDNS(monkeypatch, {"receiver.internal": [["127.0.0.1"]]})
    webhook = _hook(f"https://receiver.internal:{port}/hook", world)
    t0 = timezone.now()
    delivery = _delivery(webhook, world, t0)

    assert sender.deliver(delivery.pk, now=t0) == outcome

    assert dns.lookups == ["receiver.internal"] and connects == [("127.0.0.1", port)]
    delivery.refresh_from_db()
    if outcome == "delivered":
        assert len(tls_receiver.requests) == 1 and delivery.response_code == 200
    else:
        assert tls_receiver.requests == []
        # Checked against the URL's name, not the address connected to.
        assert "CERTIFICATE_VERIFY_FAILED" in delivery.error
        assert "Hostname mismatch" in delivery.error and "'receiver.internal'" in delivery.error
