#!/usr/bin/env python3
"""limits.buffer_size smaller than a TLS record (1 KiB and 4 KiB buffers;
a record carries up to 16 KiB): a 1 MiB upload, a 1 MiB download and a 1 MiB
full-duplex echo must all get through intact (sha256), for the software and
deferred providers.

Regression test for a bug this test found (since fixed in
src/proxy/tg_conn_relay.c now): with buffer_size 1024 a client upload stalled.
tg_conn_pump() stopped after 8 rounds and waited for the client socket to
become readable again, but SSL_read() had already pulled a whole 16 KiB
record out of the socket and returned only 1 KiB of it: the rest sat
decrypted in OpenSSL's buffer (SSL_has_pending) and nothing woke the
connection; the upstream got exactly 8 KiB less than was sent.
"""
import hashlib
import os

import tglib
import tg_upstream
from tglib import check, check_eq

MiB = 1 << 20


def upload(port, body, up):
    n0 = len(up.conns)
    head = b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body)
    with tglib.tls_connect(port, timeout=5) as s:
        # Head and body in separate writes, as curl does: the body then ends
        # with a full 16 KiB TLS record.
        s.sendall(head)
        s.sendall(body)
        try:
            data = tglib.recv_all(s)
        except TimeoutError:
            got = sum(len(c.received) for c in up.conns[n0:])
            raise tglib.TestFailure("upload stalled: no answer after 5 s; the upstream received "
                                    "%d bytes (head + body), %d short of the request"
                                    % (got, len(head) + len(body) - got)) from None
    check(b'"body_len": %d' % len(body) in data,
          "upstream did not get the whole %d-byte body: %r" % (len(body), data[-200:]))
    check(tglib.sha256(body).encode() in data, "body sha256 differs at the upstream")


def download(port, n):
    with tglib.tls_connect(port, timeout=15) as s:
        s.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: a\r\n\r\n" % n)
        data = tglib.recv_all(s)
    head, _, body = data.partition(b"\r\n\r\n")
    check_eq(len(body), n, "downloaded bytes")
    check_eq(tglib.sha256(body), tglib.sha256(tg_upstream.pattern_bytes(n)), "download sha256")


def duplex(port, n):
    """Send n bytes while reading the echo concurrently; then close_notify."""
    payload = os.urandom(n)
    with tglib.tls_connect(port, timeout=15) as s:
        got = tglib.duplex(s, payload, n, timeout=15)
    check(len(got) >= n, "echoed %d of %d bytes" % (len(got), n))
    check_eq(hashlib.sha256(got[:n]).hexdigest(), tglib.sha256(payload), "echo sha256")


def one_record(port):
    """One full 16 KiB TLS record (a single SSL_write), echoed back."""
    payload = os.urandom(16384)
    with tglib.tls_connect(port, timeout=15) as s:
        got = tglib.duplex(s, payload, len(payload), timeout=5)
    check(len(got) >= len(payload), "one 16 KiB record: %d of %d bytes echoed"
          % (len(got), len(payload)))
    check_eq(hashlib.sha256(got[:len(payload)]).hexdigest(), tglib.sha256(payload), "echo sha256")


def main(t):
    http = t.upstream("http")
    echo = t.upstream("echo")
    pair = t.cert("rsa", "a.test")
    for variant in ("software", "deferred"):
        for bufsize in (1024, 4096):
            gw = t.gateway(tglib.gw_config(
                [tglib.listener([pair], http.addr, variant, name="http"),
                 tglib.listener([pair], echo.addr, variant, name="echo")],
                limits={"buffer_size": bufsize}))
            with t.case("%s buffer_size %d: 1 MiB download" % (variant, bufsize)):
                download(gw.ports["http"], MiB)
            with t.case("%s buffer_size %d: 1 MiB full-duplex echo" % (variant, bufsize)):
                duplex(gw.ports["echo"], MiB)
            with t.case("%s buffer_size %d: one 16 KiB record echoed" % (variant, bufsize)):
                one_record(gw.ports["echo"])
            with t.case("%s buffer_size %d: 16 KiB and 1 MiB uploads (regression: stalled at 1024)" % (variant, bufsize),
                        keep_going=True):
                upload(gw.ports["http"], os.urandom(16384), http)
                upload(gw.ports["http"], os.urandom(MiB), http)
            gw.stop_ok()


tglib.run(main, timeout=180)
