#!/usr/bin/env python3
"""Asynchronous key operations: connections that go away while their key
operation is pending, and injected provider failures (deferred provider).

  - delay: 300ms: 60 clients send a real ClientHello and disconnect at once
    (FIN or RST), in parallel. tlsgate must not crash or leak: every
    connection is closed once its operation completes (connections_active
    and keyprov_pending back to 0), a normal handshake still works, and
    SIGTERM exits 0 (under TG_VALGRIND=1: no definite leak, no error).
  - delay: 300ms + handshake_timeout: 150ms: the timer fires while the
    handshake is paused on its key operation (the close must wait for the
    job); 20 parallel clients see EOF, result="timeout" x 20.
  - delay: 3s + drain_timeout: 300ms: SIGTERM while 10 handshakes are paused
    on key operations: the drain timeout closes them, the pending operations
    are finished at teardown, exit status 0 within a few seconds.
  - fail_every: 3, fail_mode: error, fallback: true: every handshake succeeds,
    fallbacks{reason="injected"} = operations / 3.
  - fail_every: 3, fail_mode: fatal, key_exchange: false (only the signature
    is asynchronous): exactly every 3rd handshake fails with
    result="key_operation_failed"; with key_exchange: true and fail_every: 5
    some fail, some succeed, one failed operation per failed handshake; the
    server keeps serving.
  - a provider that cannot run on this machine (cryptomb, qat without the
    hardware) with fallback: true: tlsgate starts, logs the fallback and its
    reason, and serves with the software provider (skipped, with a message,
    where the provider is not built in or can run).
"""
import signal
import socket
import ssl
import struct
import time

import tglib
from tglib import check, check_eq, check_ge


def hello_and_go(port, ch, rst):
    s = socket.create_connection(("127.0.0.1", port), timeout=5 * tglib.SCALE)
    s.sendall(ch)
    if rst:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def hello_and_wait(port, ch, timeout=10):
    """Send a ClientHello, read until tlsgate closes; returns seconds waited."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout * tglib.SCALE)
    t0 = time.monotonic()
    try:
        s.sendall(ch)
        while True:
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                break
            if not d:
                break
        return time.monotonic() - t0
    finally:
        s.close()


def quiet(gw, what, timeout=10):
    def ok():
        st = gw.stats()
        return (st("tlsgate_connections_active") == 0 and
                st("tlsgate_keyprov_pending", provider="deferred") == 0)
    tglib.wait_until(ok, timeout, "%s: connections_active and keyprov_pending back to 0" % what)


def handshake(port, version=None):
    """True if a full handshake + round trip works, False on a TLS failure."""
    try:
        with tglib.tls_connect(port, tglib.client_ctx(version)) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            data = tglib.recv_all(s)
        check(data.startswith(b"HTTP/1.1 200"), "bad answer %r" % data[:60])
        return True
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return False


def main(t):
    up = t.upstream("http")
    pair = t.cert("rsa", "a.test")
    ch13 = tglib.client_hello("1.3")
    ch12 = tglib.client_hello("1.2")

    def gateway(limits=None, **typed):
        prov = tglib.provider("deferred", **typed)
        return t.gateway(tglib.gw_config([tglib.listener([pair], up.addr, prov)], limits=limits))

    with t.case("delay 300ms: 60 clients send a ClientHello and leave at once"):
        gw = gateway(delay="300ms")
        tglib.threads(60, lambda i: hello_and_go(gw.port, ch13 if i % 2 else ch12, rst=i % 3 == 0))
        tglib.wait_until(lambda: gw.stats()("tlsgate_connections_accepted_total") == 60, 10,
                         "60 connections accepted")
        quiet(gw, "after the aborted handshakes")
        st = gw.stats()
        check_eq(st("tlsgate_handshakes_total", result="ok"), 0, "handshakes ok")
        check_eq(st("tlsgate_handshakes_total"), 60, "every aborted handshake counted once")
        check_eq(st("tlsgate_handshakes_total", result="timeout"), 0, "no timeouts")
        check_ge(st("tlsgate_keyprov_operations_total", provider="deferred"), 60,
                 "the operations were submitted")
        check(handshake(gw.port), "a normal handshake after the aborted ones")
        quiet(gw, "after the normal handshake")
        check_eq(gw.stats()("tlsgate_handshakes_total", result="ok"), 1, "handshakes ok")
        gw.stop_ok()

    with t.case("delay 300ms, handshake_timeout 150ms: timeout while the key operation is pending"):
        gw = gateway(limits={"handshake_timeout": "150ms"}, delay="300ms")
        waited = tglib.threads(20, lambda i: hello_and_wait(gw.port, ch13 if i % 2 else ch12))
        check(all(w >= 0.14 for w in waited), "closed before the handshake timeout: %r" % waited)
        check(all(w <= 5 * tglib.SCALE for w in waited), "closed too late: %r" % waited)
        quiet(gw, "after the timeouts")
        st = gw.stats()
        check_eq(st("tlsgate_handshakes_total", result="timeout"), 20, "handshake timeouts")
        check_eq(st("tlsgate_handshakes_total"), 20, "no other handshake result")
        check_eq(st("tlsgate_connections_closed_total", reason="handshake_timeout"), 20,
                 "closed by the handshake timeout")
        gw.stop_ok()

    with t.case("delay 3s, drain_timeout 300ms: SIGTERM with handshakes paused on key operations"):
        gw = gateway(limits={"drain_timeout": "300ms"}, delay="3s")
        socks = []
        for i in range(10):
            s = socket.create_connection(("127.0.0.1", gw.port), timeout=10 * tglib.SCALE)
            s.sendall(ch13 if i % 2 else ch12)
            socks.append(s)
        tglib.wait_until(lambda: gw.stats()("tlsgate_keyprov_pending", provider="deferred") >= 10,
                         10, "10 pending key operations")
        t0 = time.monotonic()
        rc = gw.stop(signal.SIGTERM, timeout=20)
        dt = time.monotonic() - t0
        check(rc is not None, "tlsgate did not exit after SIGTERM")
        check_eq(rc, 0, "exit status")
        check(dt < 2.5 * tglib.SCALE, "exit took %.1fs: the 3s key operations were awaited "
              "instead of cancelled at the 300ms drain timeout" % dt)
        for s in socks:
            s.settimeout(5)
            try:
                while s.recv(65536):
                    pass
            except ConnectionResetError:
                pass
            s.close()
        check("drain timeout" in gw.log(), "drain timeout logged")
        gw.stop_ok()  # already exited: checks the sanitizer/valgrind verdict in the log

    with t.case("fail_every 3, fail_mode error: runtime fallback, every handshake succeeds"):
        gw = gateway(fail_every=3, fail_mode="error")
        for i in range(30):
            check(handshake(gw.port, ("1.2", "1.3")[i % 2]), "handshake %d failed" % i)
        quiet(gw, "after the handshakes")
        st = gw.stats()
        ops = st("tlsgate_keyprov_operations_total", provider="deferred")
        check_eq(st("tlsgate_handshakes_total", result="ok"), 30, "handshakes ok")
        check_eq(st("tlsgate_keyprov_fallbacks_total", provider="deferred", reason="injected"),
                 ops // 3, "injected fallbacks (%d operations)" % ops)
        check_eq(st("tlsgate_keyprov_operations_failed_total", provider="deferred"), 0,
                 "failed operations")
        gw.stop_ok()

    with t.case("fail_every 3, fail_mode fatal, key_exchange false: every 3rd handshake fails"):
        gw = gateway(fail_every=3, fail_mode="fatal", key_exchange=False)
        results = [handshake(gw.port, ("1.2", "1.3")[i % 2]) for i in range(30)]
        check_eq(results, [i % 3 != 2 for i in range(30)], "which handshakes succeed")
        quiet(gw, "after the failures")
        st = gw.stats()
        check_eq(st("tlsgate_handshakes_total", result="key_operation_failed"), 10,
                 "key_operation_failed")
        check_eq(st("tlsgate_handshakes_total", result="ok"), 20, "handshakes ok")
        check_eq(st("tlsgate_keyprov_operations_failed_total", provider="deferred"), 10,
                 "failed operations")
        check_eq(st("tlsgate_keyprov_operations_total", provider="deferred", type="kx_keygen"), 0,
                 "key exchange stays inline with key_exchange: false")
        gw.stop_ok()

    with t.case("fail_every 5, fail_mode fatal, key exchange too: some fail, server keeps serving"):
        gw = gateway(fail_every=5, fail_mode="fatal")
        results = [handshake(gw.port, ("1.2", "1.3")[i % 2]) for i in range(30)]
        ok, bad = results.count(True), results.count(False)
        check(ok > 0 and bad > 0, "want some successes and some failures, got %d/%d" % (ok, bad))
        quiet(gw, "after the failures")
        st = gw.stats()
        check_eq(st("tlsgate_handshakes_total", result="key_operation_failed"), bad,
                 "key_operation_failed = failed client handshakes")
        check_eq(st("tlsgate_handshakes_total", result="ok"), ok, "handshakes ok")
        check_eq(st("tlsgate_keyprov_operations_failed_total", provider="deferred"), bad,
                 "one failed operation per failed handshake")
        quiet(gw, "after the failures")
        gw.stop_ok()

    for name in ("cryptomb", "qat"):
        with t.case("%s, fallback: true, on a machine where it cannot run: serves in software"
                    % name):
            probe = t.path("probe-%s.yaml" % name)
            with open(probe, "w") as f:
                f.write(tglib.to_yaml(tglib.gw_config([tglib.listener(
                    [pair], up.addr, {"provider_name": name, "fallback": False})])) + "\n")
            r = t.run_cmd([tglib.tlsgate_path(), "check-config", probe])
            err = r.stderr.decode()
            if r.returncode == 0:
                print("    SKIPPED: provider '%s' can run on this machine" % name)
                continue
            if "unknown provider" in err:
                print("    SKIPPED: provider '%s' is not built into this tlsgate" % name)
                continue
            check("cannot run here" in err, "fallback: false refused with: %s" % err.strip())
            gw = t.gateway(tglib.gw_config([tglib.listener(
                [pair], up.addr, {"provider_name": name, "fallback": True})]))
            check("key provider 'software' (fallback from '%s')" % name in gw.log(),
                  "the start-up log names the fallback")
            check(("provider '%s' cannot run here" % name) in gw.log(), "the reason is logged")
            for v in ("1.2", "1.3"):
                check(handshake(gw.port, v), "TLS %s handshake with the fallback" % v)
            tglib.settle(gw)
            st = gw.stats()
            check_eq(st("tlsgate_handshakes_total", result="ok"), 2, "handshakes ok")
            check_eq(st("tlsgate_keyprov_operations_total", provider="software", type="rsa_sign"),
                     2, "signatures done by the software provider")
            gw.stop_ok()


tglib.run(main, timeout=120)
