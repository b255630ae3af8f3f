"""tglib: the shared harness of the Python integration tests.

A test script does

    import tglib
    from tglib import check, check_eq

    def main(t):                      # t: tglib.Test
        up = t.upstream("echo")       # in-process upstream (tg_upstream.py)
        cert, key = t.cert("rsa", "a.test")
        gw = t.gateway(tglib.gw_config([tglib.listener([(cert, key)], up.addr)]))
        ...
        gw.stop_ok()                  # SIGTERM, exit status 0 (valgrind/ASan clean)

    tglib.run(main)

and gets: a temp dir per test (removed at exit), free ports (every listener
binds port 0; the ports are read back from tlsgate's log), certificates made
with `openssl req`, processes started in the background and killed BY PID at
exit, a bounded overall run time (TG_TEST_TIMEOUT, default 120 s), and on any
failure the logs of every process it started.

Environment:
  TLSGATE            the binary (ctest sets it); else $TG_BUILD_DIR/tlsgate
  TG_VALGRIND=1      run tlsgate under valgrind; a definite leak or a memory
                     error at exit fails the test (exit status 99)
  TG_TIMEOUT_SCALE   multiply every deadline (default 1, 10 under valgrind)
  TG_LOG_LEVEL       tlsgate's --log-level (default info)
  TG_KEEP_TMP=1      keep the temp dir
"""
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import tg_upstream  # noqa: E402

VALGRIND = os.environ.get("TG_VALGRIND", "") not in ("", "0")
SCALE = float(os.environ.get("TG_TIMEOUT_SCALE") or (10 if VALGRIND else 1))
LOG_LEVEL = os.environ.get("TG_LOG_LEVEL", "info")

# Key provider variants every handshake test runs against.
PROVIDERS = {
    "software": {"provider_name": "software"},
    # deferred: every RSA/ECDSA signature AND (key_exchange defaults to true)
    # the X25519 / P-256 keygen + derive go through the asynchronous path.
    "deferred": {"provider_name": "deferred"},
    "deferred-5ms": {"provider_name": "deferred", "typed_config": {"delay": "5ms"}},
    # cryptomb batches on machines with AVX-512 IFMA; elsewhere (and under
    # valgrind, which hides AVX-512) fallback serves the same test in software.
    "cryptomb": {"provider_name": "cryptomb", "fallback": True},
}
# TG_PROVIDERS="software deferred cryptomb": the variants to loop over (a name
# not listed above is used as provider_name with fallback: false).
if os.environ.get("TG_PROVIDERS"):
    PROVIDERS = {v: PROVIDERS.get(v, {"provider_name": v, "fallback": False})
                 for v in os.environ["TG_PROVIDERS"].split()}


# What a sanitizer (ASan, UBSan, LSan, TSan) prints when it finds something.
SANITIZER_RE = re.compile(r"(ERROR|WARNING): (Address|Leak|Thread)Sanitizer|runtime error: ")


class TestFailure(Exception):
    pass


class TestSkip(Exception):
    pass


class TestTimeout(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def check_eq(got, want, msg):
    if got != want:
        raise TestFailure("%s: got %r, want %r" % (msg, got, want))


def check_ge(got, want, msg):
    if not got >= want:
        raise TestFailure("%s: got %r, want >= %r" % (msg, got, want))


# The signature type `openssl s_client` prints ("Peer signature type:", with
# -brief "Signature type:"), as regexes for check_sigtype (the same as lib.sh's
# TG_SIG_*): OpenSSL 3.0 prints RSA-PSS / RSA / ECDSA, 3.5 rsa_pss_rsae_sha256 /
# rsa_pkcs1_sha256 / ecdsa_secp256r1_sha256.
SIG_RSA_PSS = r"(RSA-PSS|rsa_pss_(rsae|pss)_sha(256|384|512))"
SIG_RSA_PKCS1 = r"(RSA|rsa_pkcs1_sha(1|224|256|384|512))"
SIG_ECDSA = r"(ECDSA|ecdsa_[A-Za-z0-9_]+)"


def check_sigtype(out, want, msg):
    """s_client's output `out` names a signature of the kind `want` (SIG_*)."""
    m = re.search(r"^(?:Peer signature|Signature) type: (.*)$", out, re.M)
    got = m.group(1) if m else None
    if got is None or not re.fullmatch(want, got):
        raise TestFailure("%s: signature type %r, want /%s/ (output: %s)"
                          % (msg, got, want, out[-300:]))


def wait_until(pred, timeout, what, interval=0.02):
    """Poll pred() until it returns a true value (returned) or fail after timeout*SCALE."""
    deadline = time.monotonic() + timeout * SCALE
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TestFailure("timed out after %.1fs waiting for %s" % (timeout * SCALE, what))
        time.sleep(interval)


def tlsgate_path():
    p = os.environ.get("TLSGATE")
    if p:
        return p
    bd = os.environ.get("TG_BUILD_DIR")
    for cand in ([os.path.join(bd, "tlsgate")] if bd else []) + [
            os.path.join(HERE, "..", "..", d, "tlsgate")
            for d in ("build-integ", "build", "build-asan")]:
        if os.access(cand, os.X_OK):
            return os.path.abspath(cand)
    raise TestFailure("no tlsgate binary: set TLSGATE=/path/to/tlsgate")


# ---------------------------------------------------------------- YAML / config

def _yaml_scalar(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(str(v))  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(obj, indent=0):
    """Block-style YAML for dicts, lists and scalars (enough for tlsgate configs)."""
    pad = " " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out.append("%s%s:" % (pad, k))
                out.append(to_yaml(v, indent + 2))
            elif isinstance(v, list):
                out.append("%s%s: []" % (pad, k))
            elif isinstance(v, dict):
                out.append("%s%s: {}" % (pad, k))
            else:
                out.append("%s%s: %s" % (pad, k, _yaml_scalar(v)))
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, (dict, list)) and v:
                inner = to_yaml(v, indent + 2).split("\n")
                out.append("%s- %s" % (pad, inner[0].lstrip()))
                out.extend(inner[1:])
            else:
                out.append("%s- %s" % (pad, _yaml_scalar(v)))
    else:
        out.append(pad + _yaml_scalar(obj))
    return "\n".join(out)


def provider(variant="software", **typed):
    """A private_key_provider block: a PROVIDERS variant plus extra typed_config keys."""
    p = json.loads(json.dumps(PROVIDERS[variant] if isinstance(variant, str) else variant))
    if typed:
        p.setdefault("typed_config", {}).update(typed)
    return p


def cert_entry(cert, key, prov="software", server_names=None):
    e = {"certificate_chain": {"filename": cert}, "private_key": {"filename": key}}
    if server_names:
        e["server_names"] = list(server_names)
    e["private_key_provider"] = prov if isinstance(prov, dict) else provider(prov)
    return e


def listener(certs, upstream, prov="software", name="l0", tls=None, upstream_extra=None,
             address="127.0.0.1:0"):
    """certs: [(cert, key)] or cert_entry() dicts; upstream: "host:port", or
    None when upstream_extra gives the endpoints."""
    entries = [c if isinstance(c, dict) else cert_entry(c[0], c[1], prov) for c in certs]
    t = {"certificates": entries}
    t.update(tls or {})
    u = {"address": upstream} if upstream is not None else {}
    u.update(upstream_extra or {})
    return {"name": name, "address": address, "tls": t, "upstream": u}


def gw_config(listeners, limits=None, concurrency=1, admin=True, extra=None):
    """extra: more top-level keys (e.g. {"dns": {...}})."""
    cfg = {"concurrency": concurrency}
    if admin:
        cfg["admin"] = {"address": "127.0.0.1:0"}
    cfg["listeners"] = listeners
    if limits:
        cfg["limits"] = limits
    cfg.update(extra or {})
    return cfg


# ---------------------------------------------------------------- processes

VALGRIND_ARGS = ["--error-exitcode=99", "--leak-check=full", "--errors-for-leak-kinds=definite",
                 "--show-leak-kinds=definite", "--num-callers=30"]


def valgrind_wrap(t, argv):
    """(argv, env) to run argv under valgrind, with the job-stack shim
    (vg_async_stacks.c) preloaded so that OpenSSL's ASYNC stack switches do
    not produce bogus errors. TG_VALGRIND_OPTS adds valgrind options."""
    so = os.path.join(t.dir, "vg_async_stacks.so")
    if not os.path.exists(so):
        r = subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", so,
                            os.path.join(HERE, "vg_async_stacks.c"), "-ldl"], capture_output=True)
        check(r.returncode == 0, "cannot build vg_async_stacks.so: %s" % r.stderr.decode()[-800:])
    env = dict(os.environ)
    env["LD_PRELOAD"] = (so + " " + env.get("LD_PRELOAD", "")).strip()
    opts = os.environ.get("TG_VALGRIND_OPTS", "").split()
    return ["valgrind"] + opts + VALGRIND_ARGS + argv, env


class Proc:
    def __init__(self, t, name, argv, env=None, stdout=None):
        """stdout: where the process's stdout goes (default: the log, with stderr)."""
        self.t = t
        self.name = name
        self.argv = argv
        self.log_path = t.unique_path(name, ".log")
        self.logf = open(self.log_path, "wb")
        self.p = subprocess.Popen(argv, stdout=self.logf if stdout is None else stdout,
                                  stderr=subprocess.STDOUT if stdout is None else self.logf,
                                  stdin=subprocess.DEVNULL, env=env, cwd=t.dir)
        self.pid = self.p.pid
        t.procs.append(self)

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout):
        """Exit status, or None if still running after timeout*SCALE."""
        try:
            return self.p.wait(timeout * SCALE)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            pass


class Stats:
    """A parsed /stats snapshot."""

    LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$')
    LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

    def __init__(self, text):
        self.text = text
        self.series = []
        for ln in text.splitlines():
            if not ln or ln.startswith("#"):
                continue
            m = self.LINE.match(ln)
            if not m:
                raise TestFailure("unparsable /stats line: %r" % ln)
            labels = dict(self.LABEL.findall(m.group(3) or ""))
            self.series.append((m.group(1), labels, float(m.group(4))))

    def get(self, name, **labels):
        """Sum of every series of `name` whose labels include `labels`; None if no series."""
        vals = [v for n, lb, v in self.series
                if n == name and all(lb.get(k) == str(x) for k, x in labels.items())]
        return sum(vals) if vals else None

    def __call__(self, name, **labels):
        v = self.get(name, **labels)
        if v is None:
            raise TestFailure("/stats has no series %s%r" % (name, labels))
        return v


class Gateway(Proc):
    """A running `tlsgate run` with its config; ports read from its log."""

    def __init__(self, t, cfg, name="tlsgate", extra_args=(), wait=True, env=None, stdout=None):
        self.cfg_path = t.unique_path(name, ".yaml")
        text = cfg if isinstance(cfg, str) else to_yaml(cfg) + "\n"
        with open(self.cfg_path, "w") as f:
            f.write(text)
        # Its own pid file: tests and gateways run side by side.
        self.pid_path = self.cfg_path[:-len(".yaml")] + ".pid"
        argv = [tlsgate_path(), "run", "--config", self.cfg_path, "--log-level", LOG_LEVEL,
                "--pid-file", self.pid_path]
        argv += list(extra_args)
        if VALGRIND:
            argv, venv = valgrind_wrap(t, argv)
            extra = dict(env or {})
            if "LD_PRELOAD" in extra:  # the test's library and the job-stack shim
                extra["LD_PRELOAD"] = venv["LD_PRELOAD"] + " " + extra["LD_PRELOAD"]
            env = dict(venv, **extra)
        elif env is not None:
            env = dict(os.environ, **env)
        super().__init__(t, name, argv, env, stdout)
        self.ports = {}
        self.admin_port = None
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout=20):
        def ready():
            if not self.alive():
                raise TestFailure("%s exited early with status %s" % (self.name, self.p.poll()))
            log = self.log()
            return re.search(r"tlsgate \S+ ready", log) and log
        log = wait_until(ready, timeout, "%s to log 'ready'" % self.name)
        for m in re.finditer(r"listener (\S+): listening on (\S+?),", log):
            self.ports[m.group(1)] = int(m.group(2).rsplit(":", 1)[1])
        m = re.search(r"admin: listening on \S+ \(port (\d+)\)", log)
        if m:
            self.admin_port = int(m.group(1))
            wait_until(lambda: self.http_admin("/ready")[0] == 200, timeout, "/ready = 200")
        return self

    @property
    def port(self):
        """The port of the first listener."""
        return next(iter(self.ports.values()))

    def http_admin(self, path):
        """(status, body) of a GET on the admin endpoint; (None, error) if it cannot connect."""
        try:
            with socket.create_connection(("127.0.0.1", self.admin_port), timeout=5 * SCALE) as s:
                s.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                          % path.encode())
                data = b""
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    data += d
        except OSError as e:
            return None, str(e)
        head, _, body = data.partition(b"\r\n\r\n")
        try:
            status = int(head.split(b" ", 2)[1])
        except (IndexError, ValueError):
            raise TestFailure("bad admin response to %s: %r" % (path, data[:200]))
        return status, body.decode("utf-8", "replace")

    def stats(self):
        st, body = self.http_admin("/stats")
        check_eq(st, 200, "GET /stats status")
        return Stats(body)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Signal and wait; returns the exit status (None if it did not exit)."""
        self.signal(sig)
        return self.wait(timeout)

    def stop_ok(self, sig=signal.SIGTERM, timeout=30):
        rc = self.stop(sig, timeout)
        if rc is None:
            raise TestFailure("%s did not exit within %.0fs of signal %d"
                              % (self.name, timeout * SCALE, sig))
        if rc == 99 and VALGRIND:
            raise TestFailure("valgrind reported errors or definite leaks (exit 99)")
        check_eq(rc, 0, "%s exit status after signal %d" % (self.name, sig))
        log = self.log()
        for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            check(bad not in log, "%s log contains %r" % (self.name, bad))


# Counter families the robustness tests compare exactly.
OUTCOME_FAMILIES = ("tlsgate_handshakes_total", "tlsgate_connections_closed_total",
                    "tlsgate_upstream_connects_total", "tlsgate_upstream_resets_total",
                    "tlsgate_connections_rejected_total")


def settle(gw, timeout=10):
    """Wait until tlsgate has no connection open: a client may finish before
    tlsgate has counted the close (or a failed handshake) of its connection."""
    wait_until(lambda: gw.stats()("tlsgate_connections_active") == 0, timeout,
               "connections_active = 0")


def snapshot(gw, families=OUTCOME_FAMILIES):
    """{(name, labels): value} of the given counter families."""
    return {(n, tuple(sorted(lb.items()))): v for n, lb, v in gw.stats().series if n in families}


def delta(before, after):
    """{"name{k=v,...}": increase} of every counter that changed."""
    d = {}
    for k, v in after.items():
        if v != before.get(k, 0):
            d["%s{%s}" % (k[0], ",".join("%s=%s" % kv for kv in k[1]))] = v - before.get(k, 0)
    return d


def expect_delta(gw, before, want, what, timeout=5, families=OUTCOME_FAMILIES):
    """Poll until the counters moved by exactly `want` ({"name{k=v}": n});
    counters not named must not move."""
    last = {}

    def ok():
        last["d"] = delta(before, snapshot(gw, families))
        return last["d"] == want
    try:
        wait_until(ok, timeout, "counters")
    except TestFailure:
        raise TestFailure("%s: counter changes %r, want %r" % (what, last.get("d"), want)) from None


# ---------------------------------------------------------------- the test

class Test:
    def __init__(self, name):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="tg-%s-" % name)
        # tlsgate's state directory (default pid file, demo certificate):
        # this test's own, so that tests running side by side do not meet.
        os.environ["TLSGATE_STATE_DIR"] = os.path.join(self.dir, "state")
        self.procs = []
        self.upstreams = []
        self.failures = []  # from case(keep_going=True)
        self.t0 = time.monotonic()

    # -- resources --
    def path(self, *p):
        return os.path.join(self.dir, *p)

    def unique_path(self, name, ext):
        """DIR/name.ext, or DIR/name-2.ext, ... if taken (several gateways in one test)."""
        p, i = self.path(name + ext), 1
        while os.path.exists(p):
            i += 1
            p = self.path("%s-%d%s" % (name, i, ext))
        open(p, "a").close()
        return p

    def cert(self, kind, cn, sans=None, name=None):
        """Self-signed certificate: kind 'rsa' (2048) or 'ec' (P-256); DNS SANs default [cn]."""
        name = name or "%s-%s" % (kind, cn.replace("*", "star"))
        c, k = self.path(name + ".pem"), self.path(name + ".key")
        if os.path.exists(c):
            return c, k
        newkey = ["-newkey", "rsa:2048"] if kind == "rsa" else [
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        san = ",".join("DNS:" + s for s in (sans or [cn]))
        r = subprocess.run(["openssl", "req", "-x509", "-nodes", "-days", "2", "-subj", "/CN=" + cn,
                            "-addext", "subjectAltName=" + san, "-keyout", k, "-out", c] + newkey,
                           capture_output=True)
        check(r.returncode == 0, "openssl req failed: %s" % r.stderr.decode()[-500:])
        return c, k

    def upstream(self, mode, listen="127.0.0.1:0"):
        up = tg_upstream.Upstream(mode, listen)
        self.upstreams.append(up)
        return up

    def gateway(self, cfg, name="tlsgate", **kw):
        return Gateway(self, cfg, name, **kw)

    def spawn(self, name, argv, env=None):
        return Proc(self, name, argv, env)

    def run_cmd(self, argv, timeout=30, **kw):
        return subprocess.run(argv, capture_output=True, timeout=timeout * SCALE, cwd=self.dir,
                              **kw)

    @contextlib.contextmanager
    def case(self, what, keep_going=False):
        """A named step. keep_going: record a failure and go on with the next
        step (the test still fails at the end)."""
        t0 = time.monotonic()
        print("--- %s" % what, flush=True)
        try:
            yield
        except (TestFailure, OSError, ssl.SSLError) as e:
            if not keep_going:
                raise TestFailure("[%s] %s" % (what, e)) from None
            print("    FAILED: %s" % e, flush=True)
            self.failures.append("[%s] %s" % (what, e))
            return
        print("    ok (%.2fs)" % (time.monotonic() - t0), flush=True)

    # -- teardown --
    def stop_all(self, timeout=10):
        """SIGTERM every process still running and wait for it to exit."""
        for p in self.procs:
            if p.alive():
                p.signal(signal.SIGTERM)
        for p in self.procs:
            if p.alive() and p.wait(timeout) is None:
                p.kill()

    def sanitizer_reports(self):
        """Lines where a sanitizer reported something, with the log's name."""
        found = []
        for p in self.procs:
            for ln in p.log().splitlines():
                if SANITIZER_RE.search(ln):
                    found.append("%s: %s" % (p.name, ln))
        return found

    def cleanup(self):
        for up in self.upstreams:
            up.stop()
        for p in self.procs:
            if p.alive():
                p.signal(signal.SIGTERM)
        for p in self.procs:
            if p.alive() and p.wait(3) is None:
                p.kill()
            p.logf.close()
            if p.p.stdout is not None:
                p.p.stdout.close()
        if os.environ.get("TG_KEEP_TMP"):
            print("temp dir kept: %s" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def dump_logs(self):
        for up in self.upstreams:
            with up.lock:
                conns = list(up.conns)
            print("===== upstream %s (%s): %d connection(s) =====" % (up.mode, up.addr, len(conns)))
            for i, c in list(enumerate(conns))[-10:]:
                print("  #%d from %s: received %d bytes, EOF %s, closed %s%s" % (
                    i, c.peer, len(c.received), c.saw_eof, c.closed.is_set(),
                    ", error %r" % c.error if c.error else ""))
        for p in self.procs:
            if isinstance(p, Gateway) and p.alive() and p.admin_port:
                st, body = p.http_admin("/stats")
                if st == 200:
                    print("===== /stats of %s (pid %d, non-zero counters) =====" % (p.name, p.pid))
                    print("\n".join(ln for ln in body.splitlines()
                                    if re.match(r"tlsgate_\w*(_total|_active|_pending)[{ ]", ln)
                                    and not ln.endswith(" 0")))
        for p in self.procs:
            log = p.log()
            lines = log.splitlines()
            print("===== log of %s (pid %d, %s, %d lines) =====" % (
                p.name, p.pid, " ".join(p.argv[:3]), len(lines)))
            if len(lines) > 600:
                print("\n".join(lines[:100]))
                print("[... %d lines ...]" % (len(lines) - 400))
                lines = lines[-300:]
            print("\n".join(lines))
        print("===== end of logs =====", flush=True)


def run(main, timeout=120):
    """Run main(Test) with a deadline; exit 0 on success or skip, 1 on failure."""
    name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    t = Test(name)
    # Scaled, but below ctest's TIMEOUT (600 s), which kills without cleanup.
    limit = float(os.environ.get("TG_TEST_TIMEOUT") or min(timeout * SCALE, 570))

    def on_alarm(*_):
        raise TestTimeout("test exceeded its time limit of %.0fs" % limit)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(limit) + 1)
    rc = 0
    try:
        main(t)
        # A sanitizer report in any process's log fails the test, even when
        # every check passed (a race or leak seen at exit is still a bug).
        t.stop_all()
        reports = t.sanitizer_reports()
        if reports:
            t.failures.append("sanitizer report(s):\n" + "\n".join(reports))
        if t.failures:
            raise TestFailure("%d step(s) failed:\n  %s" % (len(t.failures), "\n  ".join(t.failures)))
        print("PASS %s (%.1fs)" % (name, time.monotonic() - t.t0))
    except TestSkip as e:
        print("SKIP %s: %s" % (name, e))
    except BaseException as e:  # noqa: B902 - report everything, including timeouts
        signal.alarm(0)
        traceback.print_exc()
        print("FAIL %s: %s" % (name, e), flush=True)
        try:
            t.dump_logs()
        except Exception:
            traceback.print_exc()
        rc = 1
    finally:
        signal.alarm(0)
        t.cleanup()
    sys.exit(rc)


# ---------------------------------------------------------------- TLS clients

def client_ctx(version=None, alpn=None, ciphers=None, session_cache=True):
    """A non-verifying client context; version "1.2" / "1.3" pins it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if version == "1.2":
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif version == "1.3":
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def tls_connect(port, ctx=None, server_name="a.test", timeout=10, session=None,
                host="127.0.0.1", strict_eof=False):
    """A TLS client socket. strict_eof: a TCP EOF without close_notify raises
    ssl.SSLEOFError instead of reading as b"" (to check for a clean close)."""
    ctx = ctx or client_ctx()
    raw = socket.create_connection((host, port), timeout=timeout * SCALE)
    try:
        s = ctx.wrap_socket(raw, server_hostname=server_name, session=session,
                            suppress_ragged_eofs=not strict_eof)
    except BaseException:
        raw.close()
        raise
    return s


def recv_all(s, limit=64 << 20):
    """Read until EOF (close_notify or TCP FIN); returns bytes."""
    out = bytearray()
    while len(out) < limit:
        try:
            d = s.recv(65536)
        except ssl.SSLZeroReturnError:
            break
        if not d:
            break
        out += d
    return bytes(out)


def http_request(port, method="GET", path="/", body=b"", ctx=None, server_name="a.test",
                 timeout=10):
    """One HTTP/1.1 request over a fresh TLS connection; returns (status, body, sslsocket-info)."""
    with tls_connect(port, ctx, server_name, timeout) as s:
        req = ("%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
               % (method, path, server_name, len(body))).encode() + body
        s.sendall(req)
        data = recv_all(s)
        info = {"version": s.version(), "cipher": s.cipher()[0], "alpn": s.selected_alpn_protocol(),
                "reused": s.session_reused}
    head, _, resp_body = data.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise TestFailure("bad HTTP response: %r" % data[:200])
    return status, resp_body, info


class BioTLS:
    """A TLS client on memory BIOs over a plain socket, for what ssl.SSLSocket
    cannot do: send close_notify and keep reading application data (a TLS
    half-close; SSLSocket.unwrap() waits inside SSL_shutdown(), which rejects
    data that arrives after our close_notify), and see exactly whether the
    peer's EOF came with a close_notify."""

    def __init__(self, port, version=None, server_name="a.test", timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout * SCALE)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = client_ctx(version).wrap_bio(self.inc, self.out, server_hostname=server_name)
        self.tcp_eof = False
        while True:
            try:
                self.obj.do_handshake()
                self._flush()
                break
            except ssl.SSLWantReadError:
                self._flush()
                check(self._fill(), "EOF during the handshake")

    def _flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _fill(self):
        d = self.sock.recv(65536)
        if d:
            self.inc.write(d)
        else:
            self.tcp_eof = True
            self.inc.write_eof()
        return d

    def send(self, data):
        self.obj.write(data)
        self._flush()

    def close_notify(self, tcp_shutdown=True):
        """Send our close_notify (and a TCP FIN); reading stays possible."""
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass
        self._flush()
        if tcp_shutdown:
            self.sock.shutdown(socket.SHUT_WR)

    def read_until_close(self, limit=None):
        """Application data until the peer's close_notify (True) or a bare TCP
        EOF (False); `limit`: stop early once that many bytes arrived (None)."""
        data = bytearray()
        while limit is None or len(data) < limit:
            try:
                d = self.obj.read(65536)
                if d:
                    data += d
                    continue
                return bytes(data), True
            except ssl.SSLWantReadError:
                self._flush()
                try:
                    self._fill()
                except socket.timeout:
                    raise TestFailure("no close after %d bytes (hang)" % len(data)) from None
            except ssl.SSLZeroReturnError:
                return bytes(data), True
            except ssl.SSLEOFError:
                return bytes(data), False
        return bytes(data), None

    def close(self):
        self.sock.close()


def duplex(s, payload, want, timeout=20):
    """Send payload while reading, on one thread (an SSL object must not be used by
    two threads at once), until `want` bytes were read or EOF; returns the bytes."""
    import select
    s.setblocking(False)
    got = bytearray()
    sent = 0
    eof = False
    deadline = time.monotonic() + timeout * SCALE
    while (sent < len(payload) or len(got) < want) and not eof:
        if time.monotonic() > deadline:
            raise TestFailure("duplex: timed out with %d/%d bytes sent, %d/%d received"
                              % (sent, len(payload), len(got), want))
        wr = [s] if sent < len(payload) else []
        if not s.pending():
            select.select([s], wr, [], 0.2)
        while True:
            try:
                d = s.recv(65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except ssl.SSLZeroReturnError:
                eof = True
                break
            if not d:
                eof = True
                break
            got += d
        if sent < len(payload):
            try:
                sent += s.send(payload[sent:sent + 16384])
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
    s.setblocking(True)
    s.settimeout(timeout * SCALE)
    return bytes(got)


def client_hello(version=None, server_name="a.test"):
    """The bytes of a real ClientHello (from Python's ssl, via memory BIOs)."""
    ctx = client_ctx(version)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=server_name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    data = out.read()
    check(len(data) > 100 and data[0] == 0x16, "could not build a ClientHello")
    return data


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def still_serving(gw, server_name="a.test", what="tlsgate still serves", port=None):
    """A full handshake + a round trip through the upstream must still work
    (any upstream that answers a request: http, echo, bench --serve); then
    wait until tlsgate has closed that connection (connections_active = 0) so
    that later counter snapshots are not disturbed."""
    with tls_connect(port or gw.port, client_ctx(), server_name) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = s.recv(65536)
    check(len(data) > 0, "%s: no answer through the upstream" % what)
    wait_until(lambda: gw.stats()("tlsgate_connections_active") == 0, 10,
               "%s: connections_active back to 0" % what)
    return data


def threads(n, fn, *args):
    """Run fn(i, *args) in n threads; re-raise the first exception; return results."""
    res = [None] * n
    errs = []

    def wrap(i):
        try:
            res[i] = fn(i, *args)
        except BaseException as e:  # noqa: B902
            errs.append(e)
    ts = [threading.Thread(target=wrap, args=(i,), daemon=True) for i in range(n)]
    for x in ts:
        x.start()
    for x in ts:
        x.join(120 * SCALE)
    if errs:
        raise errs[0]
    return res
