#!/usr/bin/env python3
"""close_notify at the end of a stream, both ways; software and deferred
providers, TLS 1.2 and 1.3.

tlsgate -> client: a slow reader (small receive buffer, 4 KiB reads)
downloads a 2 MiB response; the upstream closes after the last byte. The
gateway runs with squeeze_alert.so preloaded: the first write of the alert
on each socket fails with EAGAIN, as on a socket whose send buffer is full
when the alert is due (on loopback that moment cannot be arranged; on real
networks with slow readers it is common). tlsgate must wait for room and
send close_notify before its TCP FIN: the client (strict about EOFs) gets
every byte, then close_notify, never a bare EOF (ssl.SSLEOFError).

One packet at the end: when the upstream's last bytes and its EOF reach the
gateway together, the client gets those bytes, the close_notify and the FIN
in one TCP segment (counted by the client's kernel: TCP_INFO's
tcpi_data_segs_in; no session tickets on that listener, so that nothing else
arrives after the handshake).

client -> upstream, listeners[].tls.require_close_notify:
  - false (default): a bare TCP FIN from the client ends its stream like
    close_notify: the upstream sees EOF and still answers (reason normal);
  - true: a bare FIN is a truncation: the upstream connection is reset
    (it sees ECONNRESET, never EOF), reason="client_truncated"; close_notify
    + FIN still half-closes normally.
"""
import errno
import hashlib
import os
import socket
import ssl
import struct
import subprocess

import tglib
import tg_upstream
from tglib import check, check_eq

SIZE = 2 << 20
NORMAL = {"tlsgate_handshakes_total{result=ok}": 1,
          "tlsgate_upstream_connects_total{result=ok}": 1,
          "tlsgate_connections_closed_total{reason=normal}": 1}
TRUNCATED = {"tlsgate_handshakes_total{result=ok}": 1,
             "tlsgate_upstream_connects_total{result=ok}": 1,
             "tlsgate_connections_closed_total{reason=client_truncated}": 1}


def build_shim(t):
    so = t.path("squeeze_alert.so")
    r = subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", so,
                        os.path.join(tglib.HERE, "squeeze_alert.c"), "-ldl"], capture_output=True)
    check(r.returncode == 0, "cannot build squeeze_alert.so: %s" % r.stderr.decode()[-800:])
    return so


def slow_download(port, version):
    """GET /bytes/SIZE through a small receive buffer, 4 KiB at a time;
    returns (body, how the stream ended)."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    raw.settimeout(30 * tglib.SCALE)
    raw.connect(("127.0.0.1", port))
    s = tglib.client_ctx(version).wrap_socket(raw, server_hostname="a.test",
                                               suppress_ragged_eofs=False)
    try:
        s.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n" % SIZE)
        data = bytearray()
        while True:
            try:
                d = s.recv(4096)
            except ssl.SSLZeroReturnError:
                return bytes(data), "close_notify"
            except ssl.SSLEOFError:
                return bytes(data), "EOF without close_notify"
            if not d:
                return bytes(data), "close_notify"
            data += d
    finally:
        s.close()


def download_case(gw, version):
    data, end = slow_download(gw.ports["http"], version)
    head, _, body = data.partition(b"\r\n\r\n")
    check(head.startswith(b"HTTP/1.1 200"), "response head: %r" % head[:80])
    check_eq(len(body), SIZE, "body bytes")
    check(body == tg_upstream.pattern_bytes(SIZE), "body bytes differ")
    check_eq(end, "close_notify", "how the stream ended")


# struct tcp_info (linux/tcp.h): tcpi_state at 0, tcpi_data_segs_in at 152
# (Linux 4.6 and later).
TCP_CLOSE_WAIT = 8


def tcp_info(sock):
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return info[0], struct.unpack_from("I", info, 152)[0]


def one_packet_case(gw, version):
    """Request, then count the data segments that carry the answer."""
    c = tglib.BioTLS(gw.ports["oneshot"], version)
    try:
        segs0 = tcp_info(c.sock)[1]
        c.send(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        tglib.wait_until(lambda: tcp_info(c.sock)[0] == TCP_CLOSE_WAIT, 10,
                         "the gateway's FIN")
        segs = tcp_info(c.sock)[1] - segs0
        data, notify = c.read_until_close()
    finally:
        c.close()
    check_eq(data, tg_upstream.ONESHOT_REPLY, "the answer")
    check(notify, "close_notify at the end")
    check_eq(segs, 1, "data segments from the gateway after the handshake (the answer, "
             "its close_notify and the FIN)")


def fin_case(gw, up, listener, version, how):
    """Send 10 KB, wait until the upstream has it, then end our stream."""
    payload = os.urandom(10_000)
    n0 = len(up.conns)
    c = tglib.BioTLS(gw.ports[listener], version)
    try:
        c.send(payload)
        tglib.wait_until(lambda: len(up.conns) > n0 and len(up.conns[n0].received) == len(payload),
                         10, "the upstream to receive every byte")
        rec = up.conns[n0]
        if how == "fin":
            c.sock.shutdown(socket.SHUT_WR)
        else:
            c.close_notify(tcp_shutdown=True)
        data, notify = c.read_until_close()
    finally:
        c.close()
    check(rec.closed.wait(10 * tglib.SCALE), "the upstream connection ended")
    return rec, payload, data, notify


def main(t):
    shim = build_shim(t)
    http = t.upstream("http")
    echo = t.upstream("echo")
    oneshot = t.upstream("oneshot")
    pair = t.cert("rsa", "a.test")
    env = {"LD_PRELOAD": shim,
           # a preloaded library ahead of ASan's runtime (the ASan build)
           "ASAN_OPTIONS": (os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")
           .lstrip(":")}
    for variant in ("software", "deferred"):
        gw = t.gateway(tglib.gw_config([
            tglib.listener([pair], http.addr, variant, name="http"),
            tglib.listener([pair], echo.addr, variant, name="lenient"),
            tglib.listener([pair], echo.addr, variant, name="strict",
                           tls={"require_close_notify": True}),
            tglib.listener([pair], oneshot.addr, variant, name="oneshot",
                           tls={"session_resumption": False})]), env=env)
        for version in ("1.3", "1.2"):
            with t.case("%s TLS %s: slow reader, 2 MiB, the alert meets a full buffer: "
                        "every byte, then close_notify" % (variant, version)):
                refused = gw.log().count("alert write refused")
                before = tglib.snapshot(gw)
                download_case(gw, version)
                tglib.expect_delta(gw, before, NORMAL, "download")
                check_eq(gw.log().count("alert write refused"), refused + 1,
                         "alert writes refused by the shim (the case it tests happened)")

            with t.case("%s TLS %s: the last bytes, close_notify and FIN in one packet"
                        % (variant, version)):
                before = tglib.snapshot(gw)
                one_packet_case(gw, version)
                tglib.expect_delta(gw, before, NORMAL, "one packet")

            with t.case("%s TLS %s: require_close_notify false: a bare FIN is an EOF"
                        % (variant, version)):
                before = tglib.snapshot(gw)
                rec, payload, data, notify = fin_case(gw, echo, "lenient", version, "fin")
                check(rec.saw_eof and rec.error is None, "the upstream saw EOF (error %r)"
                      % rec.error)
                trailer = b"\nUPSTREAM-EOF %d %s\n" % (
                    len(payload), hashlib.sha256(payload).hexdigest().encode())
                check_eq(data, payload + trailer, "the echo and the upstream's trailer")
                check(notify, "close_notify at the end")
                tglib.expect_delta(gw, before, NORMAL, "lenient FIN")

            with t.case("%s TLS %s: require_close_notify true: a bare FIN resets the upstream"
                        % (variant, version)):
                before = tglib.snapshot(gw)
                rec, payload, data, notify = fin_case(gw, echo, "strict", version, "fin")
                check(not rec.saw_eof, "the upstream saw EOF: a truncation looked like an end")
                check(isinstance(rec.error, OSError) and rec.error.errno == errno.ECONNRESET,
                      "the upstream connection was reset (error %r)" % rec.error)
                check(not notify, "no close_notify after a truncation")
                tglib.expect_delta(gw, before, TRUNCATED, "strict FIN")

            with t.case("%s TLS %s: require_close_notify true: close_notify + FIN half-closes"
                        % (variant, version)):
                before = tglib.snapshot(gw)
                rec, payload, data, notify = fin_case(gw, echo, "strict", version,
                                                      "close_notify")
                check(rec.saw_eof and rec.error is None, "the upstream saw EOF (error %r)"
                      % rec.error)
                check(data.startswith(payload) and b"UPSTREAM-EOF" in data,
                      "the echo and the upstream's trailer came back")
                check(notify, "close_notify at the end")
                tglib.expect_delta(gw, before, NORMAL, "strict close_notify")
        tglib.settle(gw)
        gw.stop_ok()


tglib.run(main, timeout=240)
