#!/usr/bin/env python3
"""The key server killed and restarted under load.

A gateway with two workers signs through a key server while tlsgate bench
-c 16 (4 under valgrind) makes new TLS connections to listener "a" (an RSA-2048 key the key
server signs with at once). Listener "b" has a key whose provider holds
every request for an hour (`deferred`, delay 1h): three handshakes to it are
certainly in flight when the key server goes, so each case below is decided
by counting, never by timing.

  1. SIGKILL: the requests in flight at that moment fail, and only those:
     every failed handshake is counted, and by the right reason: the bench
     errors of both listeners == tlsgate_handshakes_total{result=
     "key_operation_failed"} == tlsgate_keyserver_client_failures_total{
     reason="connection_lost"}, the three of "b" among them, at most the
     16 + 3 handshakes the clients can have in flight, no other failure;
     handshakes started while the key server is down wait for it (the
     timeout outlasts the restart) and succeed once it is back, which the
     gateway finds by itself;
  2. SIGTERM instead: the key server completes and answers what it holds
     (the three of "b" too), says goodbye, and nothing fails at all.
"""
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.environ.get("TG_SRC_DIR", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "../../../..")), "tests", "integration"))
import tglib  # noqa: E402
import tgcluster  # noqa: E402
import tgks  # noqa: E402
from tglib import check, check_eq  # noqa: E402

CONNS = 4 if tglib.VALGRIND else 16
HELD = 3
CALLS = 100 if tglib.VALGRIND else 1500
WARM = 10 if tglib.VALGRIND else 200
FAMILIES = ("tlsgate_handshakes_total", "tlsgate_keyserver_client_failures_total")


def restart_under_load(t, gw, ks, ks_cfg, sig, name):
    """Load on "a", HELD handshakes held on "b"; `sig` the key server, start
    a new one. Returns (report a, report b, counter deltas, new key server)."""
    before = tglib.snapshot(gw, FAMILIES)
    ok0 = gw.stats()("tlsgate_handshakes_total", result="ok")
    pa, outa = tgcluster.bench_start(t, gw.ports["a"], CALLS, conns=CONNS, name="bench-a-" + name)
    tglib.wait_until(lambda: not pa.alive() or
                     gw.stats()("tlsgate_handshakes_total", result="ok") >= ok0 + WARM,
                     60, "the load to get going")
    check(pa.alive(), "the load finished before the key server was stopped")
    pb, outb = tgcluster.bench_start(t, gw.ports["b"], HELD, conns=HELD, name="bench-b-" + name)
    tglib.wait_until(lambda: ks.stats()("tlsgate_keyserver_requests_in_flight") >= HELD, 30,
                     "the held handshakes to reach the key server")
    ks.signal(sig)
    check(ks.wait(30) is not None, "the key server did not exit on signal %d" % sig)
    tglib.wait_until(lambda: gw.stats()("tlsgate_keyserver_client_connected") == 0, 20,
                     "the gateway to see the key server gone")
    ks2 = tgks.KeyServer(t, ks_cfg, name="keyserver-" + name)
    tglib.wait_until(lambda: gw.stats()("tlsgate_keyserver_client_connected") == 2, 30,
                     "both workers to reconnect")
    ok1 = gw.stats()("tlsgate_handshakes_total", result="ok")
    repa = tgcluster.bench_finish(pa, outa, timeout=300)
    repb = tgcluster.bench_finish(pb, outb, timeout=60)
    tglib.settle(gw)
    check(gw.stats()("tlsgate_handshakes_total", result="ok") > ok1,
          "no handshake after the restart")
    return repa, repb, tglib.delta(before, tglib.snapshot(gw, FAMILIES)), ks2


def main(t):
    rsa_cert, rsa_key = t.cert("rsa", "a.test")
    ec_cert, ec_key = t.cert("ec", "a.test")
    sock = t.path("keys.sock")
    ks_cfg = tgks.ks_config(sock, [
        (rsa_key, None, None),
        (ec_key, None, {"provider_name": "deferred", "typed_config": {"delay": "1h"}})])
    up = tgcluster.serve(t)
    ks = tgks.KeyServer(t, ks_cfg)
    wait = "%ds" % min(60, int(20 * tglib.SCALE))
    cfg = tglib.gw_config(
        [tglib.listener([tgks.remote_cert(rsa_cert, sock, timeout=wait)], up.addr, name="a"),
         tglib.listener([tgks.remote_cert(ec_cert, sock, timeout="60s")], up.addr, name="b")],
        concurrency=2, limits={"handshake_timeout": "600s"})
    gw = t.gateway(cfg)
    tglib.wait_until(lambda: gw.stats()("tlsgate_keyserver_client_connected") == 2, 20,
                     "both workers connected")
    lost_key = "tlsgate_keyserver_client_failures_total{reason=connection_lost,socket=%s}" % sock

    with t.case("SIGKILL under load: only the requests in flight fail, each counted"):
        repa, repb, d, ks = restart_under_load(t, gw, ks, ks_cfg, signal.SIGKILL, "kill")
        errs_a, errs_b = repa["calls"] - repa["ok"], repb["calls"] - repb["ok"]
        lost = d.get(lost_key, 0)
        keyop = d.get("tlsgate_handshakes_total{result=key_operation_failed}", 0)
        print("    a: %d calls, %d failed; b: %d failed; gateway: %r"
              % (repa["calls"], errs_a, errs_b, d))
        check_eq(errs_b, HELD, "the held handshakes failed")
        check_eq(errs_a + errs_b, keyop, "failed calls == handshakes failed for their key")
        check_eq(keyop, lost, "failed handshakes == requests lost with the connection")
        check(lost <= CONNS + HELD, "more failures (%d) than handshakes in flight" % lost)
        others = {k: v for k, v in d.items() if "failures_total" in k and k != lost_key}
        check_eq(others, {}, "no other failure")
        bad = {k: v for k, v in d.items() if k.startswith("tlsgate_handshakes_total") and
               "result=ok" not in k and "key_operation_failed" not in k}
        check_eq(bad, {}, "no other handshake failure")
        for rep in (repa, repb):
            check_eq(set(tgcluster.errors(rep)) - {"tls_handshake"}, set(),
                     "bench errors other than failed handshakes: %r" % tgcluster.errors(rep))

    with t.case("SIGTERM under load: nothing fails"):
        repa, repb, d, ks = restart_under_load(t, gw, ks, ks_cfg, signal.SIGTERM, "term")
        print("    a: %d calls; b: %d; gateway: %r" % (repa["calls"], repb["calls"], d))
        check_eq(repa["ok"], repa["calls"], "bench a: %r" % tgcluster.errors(repa))
        check_eq(repb["ok"], HELD, "bench b: %r" % tgcluster.errors(repb))
        check_eq({k: v for k, v in d.items() if "failures_total" in k}, {}, "no failure")

    with t.case("clean exits"):
        gw.stop_ok()
        ks.stop_ok()


if __name__ == "__main__":
    tglib.run(main, timeout=560 if tglib.VALGRIND else 300)
