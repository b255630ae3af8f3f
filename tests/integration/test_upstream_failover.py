#!/usr/bin/env python3
"""Failover across three upstream processes under `tlsgate bench` load, two
workers:
  A  tlsgate bench --serve, healthy throughout;
  B  tlsgate bench --serve, killed (SIGKILL) in the middle of a run, later
     started again on the same port;
  C  slow: a tg_upstream.py "stall" process whose listen queue is full, so
     a connect to it hangs until connect_timeout (200 ms).
Two listeners share them: "hc" with an active health check, "ej" without
(B comes back when its ejection ends). outlier_detection ejects after 3
connect failures in a row, at most 2 of the 3 endpoints.

  1. load while B is killed: no call fails for a connect reason; B and C
     are out of service (/stats: ejected; in "hc" perhaps found unhealthy
     by the probes first), failed attempts were retried elsewhere. A call
     whose request was already in B's socket when B died cannot be replayed
     by a TCP proxy (B may have acted on it): such calls (0 to 2 per run:
     the kill must land in the fraction of a millisecond a call spends on
     the upstream) fail with a read error, are bounded by the client's
     connections, include every upstream_error close, and are reported;
  2. load while B is dead and C slow: zero failed calls, only A serves;
  3. B restarts: the health check returns it at once ("hc"), the end of its
     ejection returns it ("ej"); load: zero failed calls and B serves again.
"""
import signal

import tglib
import tgcluster as tc
from tglib import check, check_eq, wait_until

CALLS = 300 if not tglib.VALGRIND else 60


def main(t):
    pair = t.cert("rsa", "a.test")
    a = tc.serve(t, "127.0.0.1:0", "A")
    b = tc.serve(t, "127.0.0.1:0", "B")
    c = t.spawn("C-stall", ["python3", "-u", tglib.HERE + "/tg_upstream.py", "stall"])
    wait_until(lambda: not c.alive() or "serving on" in c.log(), 10, "C to listen")
    if not c.alive():
        raise tglib.TestSkip("no slow endpoint on this kernel: " + c.log().strip())
    c_addr = c.log().split("serving on ")[1].split()[0]
    addrs = {"A": a.addr, "B": b.addr, "C": c_addr}

    common = {
        "endpoints": [{"address": addrs[k]} for k in ("A", "B", "C")],
        "connect_timeout": "200ms",
        "max_connect_attempts": 3,
        "outlier_detection": {"consecutive_failures": 3, "base_ejection_time": "1s",
                              "max_ejection_time": "2s", "max_ejection_percent": 67},
    }
    hc = dict(common, health_check={"interval": "100ms", "timeout": "200ms",
                                    "unhealthy_threshold": 2, "healthy_threshold": 1})
    hc["outlier_detection"] = dict(common["outlier_detection"], base_ejection_time="60s",
                                   max_ejection_time="60s")
    gw = t.gateway(tglib.gw_config([
        tglib.listener([pair], None, "software", name="hc", upstream_extra=hc),
        tglib.listener([pair], None, "software", name="ej", upstream_extra=common),
    ], concurrency=2))

    def conns(listener, k, st=None):
        return tc.endpoint(st or gw.stats(), listener, addrs[k], "connections_total")

    def ejected(listener, k):
        return tc.endpoint(gw.stats(), listener, addrs[k], "ejected") == 1

    report = {}
    with t.case("load on both listeners while B is killed"):
        runs = {}
        for name in ("hc", "ej"):
            runs[name] = tc.bench_start(t, gw.ports[name], CALLS, conns=8, name="bench-" + name)
        # Mid-run: B has served part of the load, not all of it.
        wait_until(lambda: conns("hc", "B") >= 10 and conns("ej", "B") >= 10, 60,
                   "B to take part in both runs")
        b.proc.signal(signal.SIGKILL)
        b.proc.wait(10)
        reps = {name: tc.bench_finish(*runs[name]) for name in runs}
        st = gw.stats()
        lost = 0
        for name, r in reps.items():
            errs = tc.errors(r)
            check(set(errs) <= {"read", "write"},
                  "%s: calls failed for other reasons than B dying under them: %r" % (name, errs))
            lost += r["errors"]["total"]
            check_eq(r["calls"], CALLS, "%s: calls made" % name)
        # A lost call had its connection open on B when B died: at most one
        # per client slot; B's resets are counted (upstream_error), its
        # FINs before a response (rarer still) look like a normal close.
        resets = st("tlsgate_connections_closed_total", reason="upstream_error")
        check(resets <= lost <= 2 * 8, "calls lost (%d) vs connections B reset under them (%d)"
              % (lost, resets))
        check_eq(st("tlsgate_connections_closed_total", reason="upstream_connect_failed"), 0,
                 "connections closed for want of an upstream")
        check(st("tlsgate_upstream_connect_retries_total") > 0, "failed attempts were retried")
        report["phase1"] = "%d calls, %d lost in flight on B" % (2 * CALLS, lost)

    with t.case("C is out of service, A is not"):
        for name in ("hc", "ej"):
            check(not ejected(name, "A"), "%s: A is not ejected" % name)
        # Without a health check, only ejection takes C out (for 1 s, then
        # 2 s: by now the last one may be over; the count stays).
        st = gw.stats()
        check(tc.endpoint(st, "ej", addrs["C"], "connect_failures_total", result="timeout") >= 3,
              "ej: connect timeouts on C counted")
        check(tc.endpoint(st, "ej", addrs["C"], "ejections_total") >= 1, "ej: C ejected")
        # With one, the probes may find B and C first: skipped as unhealthy
        # before any real connect to them fails, never ejected.
        for k in ("B", "C"):
            wait_until(lambda: tc.endpoint(gw.stats(), "hc", addrs[k], "healthy") == 0, 10,
                       "hc: %s unhealthy by the health check" % k)
        check(tc.endpoint(gw.stats(), "hc", addrs["A"], "healthy") == 1, "hc: A healthy")

    with t.case("load while B is dead and C slow: zero failed calls"):
        before = {name: conns(name, "A") for name in ("hc", "ej")}
        for name in ("hc", "ej"):
            r = tc.bench(t, gw.ports[name], calls=CALLS, conns=8, name="bench-dead-" + name)
            check_eq(tc.errors(r), {}, "%s: failed calls" % name)
            check_eq(r["ok"], CALLS, "%s: calls ok" % name)
            check(conns(name, "A") - before[name] >= CALLS * 0.8,
                  "%s: A served (nearly) everything" % name)
        report["phase2"] = "%d calls, 0 failed" % (2 * CALLS)
        # ej: B was picked after its death (in the first run or here), was
        # refused, and three refusals in a row ejected it.
        st = gw.stats()
        check(tc.endpoint(st, "ej", addrs["B"], "connect_failures_total", result="refused") >= 3,
              "ej: refused connects to B counted")
        check(tc.endpoint(st, "ej", addrs["B"], "ejections_total") >= 1, "ej: B ejected")

    with t.case("B restarts and comes back"):
        b2 = tc.serve(t, addrs["B"], "B-again")
        check_eq(b2.addr, addrs["B"], "B's address")
        # hc: the health check passes: healthy again, and an ejection (60 s)
        # ends at once.
        wait_until(lambda: not ejected("hc", "B") and
                   tc.endpoint(gw.stats(), "hc", addrs["B"], "healthy") == 1, 10,
                   "hc: B back by the health check")
        check("upstream hc: endpoint %s healthy again" % addrs["B"] in gw.log(), "hc: logged")
        # ej: the ejection (1 s, then 2 s) ends by itself.
        wait_until(lambda: not ejected("ej", "B"), 10, "ej: B's ejection to end")
        for name in ("hc", "ej"):
            b0 = conns(name, "B")
            r = tc.bench(t, gw.ports[name], calls=CALLS, conns=8, name="bench-back-" + name)
            check_eq(tc.errors(r), {}, "%s: failed calls" % name)
            check(conns(name, "B") > b0, "%s: B serves again" % name)
        report["phase3"] = "%d calls, 0 failed" % (2 * CALLS)

    with t.case("nothing left open"):
        tglib.settle(gw)
        print("    failover: " + "; ".join("%s: %s" % kv for kv in sorted(report.items())))
    gw.stop_ok()


tglib.run(main, timeout=240)
