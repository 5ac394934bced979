"""kubealias.tls_context: the caller's SSLContext with the TLS name, for every other client."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl

import pytest
import trustme

import kubealias
from kubealias.testing import TLSServer

TLS_NAME = "mydb.abc123.us-east-1.rds.amazonaws.com"


@pytest.fixture(scope="module")
def server():
    with TLSServer([TLS_NAME], http=False, default_names=("wrong.example.test",)) as srv:
        yield srv


def _handshake(context: ssl.SSLContext, port: int, server_hostname: str | None) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        return context.wrap_socket(raw, server_hostname=server_hostname)
    except BaseException:
        raw.close()
        raise


def _other_ca_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    trustme.CA().configure_trust(context)
    return context


@pytest.mark.parametrize("given", ["127.0.0.1", "database", None])
def test_wrap_socket_verifies_the_tls_name_whatever_the_client_passes(server, given):
    ctx = kubealias.tls_context(TLS_NAME, server.client_context())
    with _handshake(ctx, server.port, given) as tls:
        assert tls.server_hostname == TLS_NAME
        cert = tls.getpeercert()
        assert cert is not None
        assert ("DNS", TLS_NAME) in cert["subjectAltName"]
        assert tls.recv(64)  # the server's greeting: its side of the handshake is over
    assert server.connections[-1].sni == TLS_NAME


def test_the_plain_context_fails_for_the_short_name(server):
    """The control: without kubealias, the name the client has does not verify."""
    with pytest.raises(ssl.SSLCertVerificationError, match="database"):
        _handshake(server.client_context(), server.port, "database")


def test_verification_is_the_callers_a_wrong_ca_fails(server):
    ctx = kubealias.tls_context(TLS_NAME, _other_ca_context())
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(ctx, server.port, "127.0.0.1")


def test_a_name_the_certificate_does_not_hold_fails(server):
    ctx = kubealias.tls_context("other.example.test", server.client_context())
    with pytest.raises(ssl.SSLCertVerificationError, match=r"other\.example\.test"):
        _handshake(ctx, server.port, TLS_NAME)


def test_the_default_context_verifies_with_the_system_cas(server):
    ctx = kubealias.tls_context(TLS_NAME)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    with pytest.raises(ssl.SSLCertVerificationError):  # our throwaway CA is not a system CA
        _handshake(ctx, server.port, None)


def test_a_resolution_gives_its_tls_name(server):
    resolution = kubealias.Resolution(
        name="database",
        fqdn="database.production.svc.cluster.local",
        chain=("database.production.svc.cluster.local", TLS_NAME),
        tls_name=TLS_NAME,
        addresses=("127.0.0.1",),
        is_alias=True,
    )
    ctx = kubealias.tls_context(resolution, server.client_context())
    with _handshake(ctx, server.port, "database") as tls:
        assert tls.server_hostname == TLS_NAME


def test_settings_read_and_write_through_to_the_callers_context():
    base = ssl.create_default_context()
    ctx = kubealias.tls_context(TLS_NAME, base)
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode is base.verify_mode and ctx.check_hostname is base.check_hostname
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    assert base.minimum_version == ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["h2"])  # a method of the caller's context, not of a copy
    assert ctx.options == base.options
    # A context whose host name check is off stays off: kubealias never changes whether.
    lax = ssl.create_default_context()
    lax.check_hostname = False
    assert kubealias.tls_context(TLS_NAME, lax).check_hostname is False


def test_client_certificates_of_the_callers_context_are_used(tmp_path):
    with TLSServer([TLS_NAME], http=False, require_client_cert=True) as srv:
        base = srv.client_context()
        srv.ca.issue_cert("client.example.test").configure_cert(base)
        ctx = kubealias.tls_context(TLS_NAME, base)
        with _handshake(ctx, srv.port, "127.0.0.1") as tls:
            assert tls.server_hostname == TLS_NAME


def test_rewrapping_replaces_the_name_over_the_same_base():
    base = ssl.create_default_context()
    first = kubealias.tls_context("a.example.test", base)
    second = kubealias.tls_context("b.example.test", first)
    assert second.tls_name == "b.example.test"  # type: ignore[attr-defined]
    assert second.base_context is base  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "context", "error"),
    [
        ("", None, ValueError),
        (".", None, ValueError),
        (b"x.example.test", None, TypeError),
        ("x.example.test", object(), TypeError),
        ("x.example.test", ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), ValueError),
    ],
)
def test_bad_input(name, context, error):
    with pytest.raises(error):
        kubealias.tls_context(name, context)


def test_server_side_wrapping_is_refused():
    ctx = kubealias.tls_context(TLS_NAME)
    with pytest.raises(ValueError, match="client"):
        ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=True)


def test_not_picklable():
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(kubealias.tls_context(TLS_NAME))


async def test_asyncio_connections_verify_the_tls_name(server):
    ctx = kubealias.tls_context(TLS_NAME, server.client_context())
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=ctx)
    try:
        assert writer.get_extra_info("ssl_object").server_hostname == TLS_NAME
        assert await reader.read(64)  # the server's greeting
    finally:
        writer.close()
        # The server closes after its greeting; its reset may reach the closing transport.
        with contextlib.suppress(ConnectionResetError):
            await writer.wait_closed()
    assert server.connections[-1].sni == TLS_NAME


async def test_asyncio_with_a_wrong_ca_fails(server):
    ctx = kubealias.tls_context(TLS_NAME, _other_ca_context())
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.open_connection("127.0.0.1", server.port, ssl=ctx)


@pytest.mark.parametrize("given", ["127.0.0.1", "database"])
def test_sockets_built_on_the_context_directly_verify_the_tls_name(server, given):
    """``SSLSocket._create`` and an unbound ``SSLContext.wrap_socket`` (what a subclass's
    ``super()`` call does) reach the context's ``_wrap_socket``, not ``wrap_socket``."""
    ctx = kubealias.tls_context(TLS_NAME, server.client_context())
    for wrap in (
        lambda raw: ssl.SSLSocket._create(sock=raw, server_hostname=given, context=ctx),  # type: ignore[attr-defined]
        lambda raw: ssl.SSLContext.wrap_socket(ctx, raw, server_hostname=given),
    ):
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        with wrap(raw) as tls:
            cert = tls.getpeercert()
            assert cert is not None and ("DNS", TLS_NAME) in cert["subjectAltName"]
            assert tls.recv(64)
        assert server.connections[-1].sni == TLS_NAME


def test_ssl_objects_built_on_the_context_directly_use_the_tls_name():
    ctx = kubealias.tls_context(TLS_NAME)
    for obj in (
        ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="127.0.0.1"),
        ssl.SSLContext.wrap_bio(ctx, ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="database"),
        ssl.SSLObject._create(  # type: ignore[attr-defined]
            ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="database", context=ctx
        ),
    ):
        assert obj.server_hostname == TLS_NAME
    with pytest.raises(ValueError, match="client"):
        ssl.SSLContext.wrap_bio(ctx, ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=True)


class _Closing(asyncio.Protocol):
    """Knows when its connection is gone, so a test can wait for its transport to close."""

    def __init__(self) -> None:
        self.lost = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


async def _close(transport: asyncio.BaseTransport, protocol: _Closing) -> None:
    # abort(): no TLS close_notify exchange; the socket is closed before the loop ends.
    transport.abort()  # type: ignore[attr-defined]
    await asyncio.wait_for(protocol.lost, 5)


async def test_asyncio_start_tls_and_a_given_socket_verify_the_tls_name(server):
    """``loop.start_tls`` (upgrade in the middle of a protocol: aiomysql, asyncpg) and
    ``create_connection(sock=..., server_hostname=...)`` both go through ``wrap_bio``."""
    ctx = kubealias.tls_context(TLS_NAME, server.client_context())
    loop = asyncio.get_running_loop()
    plain, protocol = await loop.create_connection(_Closing, "127.0.0.1", server.port)
    tls = await loop.start_tls(plain, protocol, ctx, server_hostname="database")
    try:
        assert tls is not None
        assert tls.get_extra_info("ssl_object").server_hostname == TLS_NAME
        assert ("DNS", TLS_NAME) in tls.get_extra_info("peercert")["subjectAltName"]
    finally:
        await _close(tls or plain, protocol)
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    raw.setblocking(False)
    transport, given = await loop.create_connection(
        _Closing, sock=raw, ssl=ctx, server_hostname="database"
    )
    try:
        assert transport.get_extra_info("ssl_object").server_hostname == TLS_NAME
        assert ("DNS", TLS_NAME) in transport.get_extra_info("peercert")["subjectAltName"]
    finally:
        await _close(transport, given)


def test_trio_ssl_stream_verifies_the_tls_name(server):
    import trio

    async def handshake(ctx: ssl.SSLContext) -> bytes | bytearray:
        tcp = await trio.open_tcp_stream("127.0.0.1", server.port)
        stream = trio.SSLStream(tcp, ctx, server_hostname="127.0.0.1")
        async with stream:
            await stream.do_handshake()
            return await stream.receive_some(64)

    assert trio.run(handshake, kubealias.tls_context(TLS_NAME, server.client_context()))
    assert server.connections[-1].sni == TLS_NAME
    with pytest.raises(trio.BrokenResourceError) as failed:  # trio's own error for it
        trio.run(handshake, kubealias.tls_context(TLS_NAME, _other_ca_context()))
    assert isinstance(failed.value.__cause__, ssl.SSLCertVerificationError)
