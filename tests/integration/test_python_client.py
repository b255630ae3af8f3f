#!/usr/bin/env python3
"""Python `ssl` clients against tlsgate, for every key provider variant:
TLS 1.3 and 1.2 with RSA-2048 and ECDSA P-256 certificates, bytes both ways
(sha256 checked by the upstream), many sequential and concurrent connections,
session resumption on (session_reused) and off (session_resumption: false),
and the /stats counters that must follow (handshakes by result and version,
resumed, key-provider operations)."""
import json
import os

import tglib
from tglib import check, check_eq, check_ge


# Fewer connections under valgrind (about 30x slower), same checks.
N_SEQ, N_THREADS, N_PER_THREAD = (5, 4, 2) if tglib.VALGRIND else (20, 8, 6)
CTX = {}


def request(port, version, body, name="a.test", session=None):
    # One context per version: a session can only be resumed with its own context.
    ctx = CTX.setdefault(version, tglib.client_ctx(version))
    with tglib.tls_connect(port, ctx, name, session=session) as s:
        s.sendall(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        data = tglib.recv_all(s)
        info = (s.version(), s.cipher()[0], s.session_reused, s.session)
    head, _, resp = data.partition(b"\r\n\r\n")
    check(head.startswith(b"HTTP/1.1 200"), "bad response head %r" % head[:80])
    j = json.loads(resp)
    check_eq(j["body_len"], len(body), "upstream body length")
    check_eq(j["body_sha256"], tglib.sha256(body), "upstream body sha256")
    return info


def main(t):
    up = t.upstream("http")
    rsa = t.cert("rsa", "a.test")
    ec = t.cert("ec", "a.test")
    for variant in tglib.PROVIDERS:
        for kind, pair in (("rsa", rsa), ("ec", ec)):
            with t.case("%s %s: TLS 1.3 + 1.2, sequential, concurrent" % (variant, kind)):
                gw = t.gateway(tglib.gw_config([tglib.listener([pair], up.addr, variant)]))
                n = 0
                for version, want in (("1.3", "TLSv1.3"), ("1.2", "TLSv1.2")):
                    body = os.urandom(3000)
                    ver, cipher, _, _ = request(gw.port, version, body)
                    n += 1
                    check_eq(ver, want, "negotiated version")
                    if version == "1.2":
                        check(("ECDSA" if kind == "ec" else "RSA") in cipher,
                              "TLS 1.2 cipher %s does not match a %s certificate" % (cipher, kind))
                        check("GCM" in cipher or "CHACHA20" in cipher, "AEAD cipher, got " + cipher)
                for i in range(N_SEQ):
                    request(gw.port, None, b"seq %d" % i)
                    n += 1
                tglib.threads(N_THREADS, lambda i: [
                    request(gw.port, ("1.2", "1.3")[(i + j) % 2], os.urandom(100 + j))
                    for j in range(N_PER_THREAD)])
                n += N_THREADS * N_PER_THREAD
                tglib.settle(gw)
                st = gw.stats()
                check_eq(st("tlsgate_handshakes_total", result="ok"), n, "handshakes ok")
                check_eq(st("tlsgate_handshakes_total") - st("tlsgate_handshakes_total", result="ok"),
                         0, "failed handshakes")
                check_eq(st("tlsgate_handshakes_by_version_total", version="TLSv1.2"),
                         1 + N_THREADS * N_PER_THREAD // 2, "TLS 1.2 handshakes")
                check_eq(st("tlsgate_connections_closed_total", reason="normal"), n,
                         "connections closed normally")
                check_eq(st("tlsgate_upstream_connects_total", result="ok"), n, "upstream connects")
                if variant.startswith("deferred"):
                    sig = "rsa_sign" if kind == "rsa" else "ecdsa_sign"
                    check_eq(st("tlsgate_keyprov_operations_total", provider="deferred", type=sig),
                             n, "deferred %s operations" % sig)
                    check_ge(st("tlsgate_keyprov_operations_total", provider="deferred",
                                type="kx_keygen"), n, "deferred key exchange keygen operations")
                    check_ge(st("tlsgate_keyprov_operations_total", provider="deferred",
                                type="kx_derive"), n, "deferred key exchange derive operations")
                    check_ge(st("tlsgate_handshake_keyop_waits_total"), 3 * n,
                             "handshake pauses on key operations")
                elif variant == "software":
                    check_eq(st("tlsgate_handshake_keyop_waits_total"), 0,
                             "software provider never pauses")
                gw.stop_ok()

        with t.case("%s: session resumption on (TLS 1.2 and 1.3) and off" % variant):
            gw = t.gateway(tglib.gw_config([tglib.listener([rsa], up.addr, variant)]))
            off = t.gateway(tglib.gw_config([tglib.listener(
                [rsa], up.addr, variant, tls={"session_resumption": False})]), name="tlsgate-noresume")
            for version in ("1.2", "1.3"):
                _, _, reused, sess = request(gw.port, version, b"first")
                check(not reused, "first connection cannot be resumed")
                check(sess is not None, "no session after the first connection (TLS %s)" % version)
                _, _, reused, _ = request(gw.port, version, b"second", session=sess)
                check(reused, "TLS %s session not resumed with session_resumption: true" % version)
                _, _, reused, sess2 = request(off.port, version, b"first")
                if sess2 is not None:
                    _, _, reused, _ = request(off.port, version, b"second", session=sess2)
                check(not reused, "TLS %s session resumed with session_resumption: false" % version)
            tglib.settle(gw)
            tglib.settle(off)
            st = gw.stats()
            check_eq(st("tlsgate_handshakes_resumed_total"), 2, "resumed handshakes (on)")
            check_eq(st("tlsgate_handshakes_total", result="ok"), 4, "handshakes ok (on)")
            check_eq(off.stats()("tlsgate_handshakes_resumed_total"), 0, "resumed handshakes (off)")
            gw.stop_ok()
            off.stop_ok()
    up.stop()


tglib.run(main, timeout=240)
