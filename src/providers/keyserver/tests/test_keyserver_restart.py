#!/usr/bin/env python3
"""The key server killed and restarted under load.

A gateway with two workers signs through a key server while tlsgate
bench -c 16 makes new TLS connections. The key server's provider is
`deferred` with a 20 ms delay, so that about 16 requests are in flight at
any moment and the kill always catches some:

  1. SIGKILL: the requests in flight at that moment fail; every failed
     handshake is counted, and by the right reason: bench's errors ==
     tlsgate_handshakes_total{result="key_operation_failed"} ==
     tlsgate_keyserver_client_failures_total{reason="connection_lost"}, at
     most the 16 handshakes the client can have in flight, and no other
     failure; handshakes started while the key server is down wait for it
     (the timeout outlasts the restart) and succeed once it is back, which
     the gateway finds by itself;
  2. SIGTERM instead: the key server answers what it holds before it
     closes, so nothing fails at all.
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

CONNS = 16
CALLS = 200 if tglib.VALGRIND else 1500
WARM = 20 if tglib.VALGRIND else 200


def restart_under_load(t, gw, ks_cfg, port, sig, name):
    """Bench; when it is under way, `sig` the key server and start a new
    one. Returns (bench report, failures counted by the gateway, the new
    key server)."""
    before = tglib.snapshot(gw, ("tlsgate_handshakes_total", "tlsgate_keyserver_client_failures_total"))
    ok0 = gw.stats()("tlsgate_handshakes_total", result="ok")
    p, out = tgcluster.bench_start(t, port, CALLS, conns=CONNS, name="bench-" + name)
    tglib.wait_until(lambda: not p.alive() or
                     gw.stats()("tlsgate_handshakes_total", result="ok") >= ok0 + WARM,
                     60, "the load to get going")
    check(p.alive(), "bench finished before the key server was stopped")
    ks = [x for x in t.procs if isinstance(x, tgks.KeyServer) and x.alive()][0]
    ks.signal(sig)
    check(ks.wait(30) is not None, "the key server did not exit on signal %d" % sig)
    tglib.wait_until(lambda: gw.stats()("tlsgate_keyserver_client_connected") == 0, 20,
                     "the gateway to see the key server gone")
    ks2 = tgks.KeyServer(t, ks_cfg, name="keyserver-" + name)
    tglib.wait_until(lambda: gw.stats()("tlsgate_keyserver_client_connected") == 2, 30,
                     "both workers to reconnect")
    ok1 = gw.stats()("tlsgate_handshakes_total", result="ok")
    rep = tgcluster.bench_finish(p, out, timeout=300)
    tglib.settle(gw)
    st = gw.stats()
    check(st("tlsgate_handshakes_total", result="ok") > ok1 or rep["calls"] == rep["ok"] + 0,
          "handshakes after the restart")
    after = tglib.snapshot(gw, ("tlsgate_handshakes_total",
                                "tlsgate_keyserver_client_failures_total"))
    return rep, tglib.delta(before, after), ks2


def main(t):
    rsa_cert, rsa_key = t.cert("rsa", "a.test")
    sock = t.path("keys.sock")
    ks_cfg = tgks.ks_config(sock, [(rsa_key, None, {"provider_name": "deferred",
                                                     "typed_config": {"delay": "20ms"}})])
    up = tgcluster.serve(t)
    tgks.KeyServer(t, ks_cfg)
    wait = "%ds" % int(20 * tglib.SCALE)
    cfg = tglib.gw_config([tglib.listener([tgks.remote_cert(rsa_cert, sock, timeout=wait)],
                                          up.addr)],
                          concurrency=2, limits={"handshake_timeout": "%ds" % int(60 * tglib.SCALE)})
    gw = t.gateway(cfg)
    tglib.wait_until(lambda: gw.stats()("tlsgate_keyserver_client_connected") == 2, 20,
                     "both workers connected")

    with t.case("SIGKILL under load: only the requests in flight fail, each counted"):
        rep, d, ks = restart_under_load(t, gw, ks_cfg, gw.port, signal.SIGKILL, "kill")
        errors = rep["calls"] - rep["ok"]
        lost = d.get('tlsgate_keyserver_client_failures_total{reason=connection_lost,'
                     'socket=%s}' % sock, 0)
        keyop = d.get("tlsgate_handshakes_total{result=key_operation_failed}", 0)
        print("    %d calls, %d failed; gateway: %r" % (rep["calls"], errors, d))
        check_eq(errors, keyop, "failed calls == handshakes failed for the key operation")
        check_eq(keyop, lost, "failed handshakes == requests lost with the connection")
        check(lost <= CONNS, "more failures (%d) than handshakes in flight (%d)" % (lost, CONNS))
        check(lost >= 1, "the kill caught no request in flight (the test proves nothing)")
        others = {k: v for k, v in d.items() if "failures_total" in k and "connection_lost" not in k}
        check_eq(others, {}, "no other failure")
        bad = {k: v for k, v in d.items() if k.startswith("tlsgate_handshakes_total") and
               "result=ok" not in k and "key_operation_failed" not in k}
        check_eq(bad, {}, "no other handshake failure")
        check_eq(tgcluster.errors(rep).keys() - {"tls_handshake"}, set(),
                 "bench errors other than failed handshakes: %r" % tgcluster.errors(rep))

    with t.case("SIGTERM under load: nothing fails"):
        rep, d, ks = restart_under_load(t, gw, ks_cfg, gw.port, signal.SIGTERM, "term")
        print("    %d calls; gateway: %r" % (rep["calls"], d))
        check_eq(rep["ok"], rep["calls"], "bench: %r" % tgcluster.errors(rep))
        check_eq({k: v for k, v in d.items() if "failures_total" in k}, {}, "no failure")

    with t.case("clean exits"):
        gw.stop_ok()
        ks.stop_ok()


if __name__ == "__main__":
    tglib.run(main, timeout=560 if tglib.VALGRIND else 300)
