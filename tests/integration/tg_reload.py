"""Helpers of the reload tests (test_reload*.py): fresh certificates, the
serial a real client is served, and waiting for a reload to be counted.

Waiting is always on a counter: `tlsgate_config_reloads_total{result="ok"}`
moves only once every worker has switched to the new configuration, so a
client connecting after that sees it; `{result="error"}` moves once a
failed reload has been logged.
"""
import os
import re
import subprocess

import tglib
from tglib import check, check_eq


def write_atomic(path, data):
    """Write a file the way careful tools do: a hidden temporary file in the
    same directory, renamed over the target."""
    tmp = os.path.join(os.path.dirname(path), ".tmp-" + os.path.basename(path))
    with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    os.rename(tmp, path)


def new_cert(t, directory, base, cn="a.test", kind="ec"):
    """A new self-signed certificate (random serial) and its key, written
    as DIRECTORY/BASE.crt and DIRECTORY/BASE.key; returns (cert, key, serial)."""
    os.makedirs(directory, exist_ok=True)
    cert, key = os.path.join(directory, base + ".crt"), os.path.join(directory, base + ".key")
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if kind == "ec" else [
        "-newkey", "rsa:2048"]
    r = t.run_cmd(["openssl", "req", "-x509", "-nodes", "-days", "2", "-subj", "/CN=" + cn,
                   "-addext", "subjectAltName=DNS:" + cn, "-keyout", key, "-out", cert] + newkey)
    check(r.returncode == 0, "openssl req: %s" % r.stderr.decode()[-300:])
    return cert, key, serial_of(t, cert)


def serial_of(t, cert_pem_path=None, pem=None):
    """The serial in upper-case hex, as `openssl x509 -serial` prints it."""
    argv = ["openssl", "x509", "-noout", "-serial"]
    if cert_pem_path:
        argv += ["-in", cert_pem_path]
    r = t.run_cmd(argv, input=pem)
    check(r.returncode == 0, "openssl x509: %s" % r.stderr.decode()[-300:])
    return r.stdout.decode().strip().split("=", 1)[1]


def served_serial(t, port, sni="a.test"):
    """What `openssl s_client` is served on 127.0.0.1:port."""
    r = t.run_cmd(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", sni],
                  input=b"", timeout=30)
    m = re.search(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", r.stdout, re.S)
    check(m is not None, "s_client got no certificate from port %d: %s"
          % (port, r.stdout.decode("utf-8", "replace")[-300:] + r.stderr.decode()[-300:]))
    return serial_of(t, pem=m.group(0))


def reloads(gw):
    """(ok, error) reload counts."""
    st = gw.stats()
    return (int(st("tlsgate_config_reloads_total", result="ok")),
            int(st("tlsgate_config_reloads_total", result="error")))


def _log_tail(gw, n=15):
    return "\n  ".join(gw.log().splitlines()[-n:])


def wait_reload(gw, before, what, timeout=30):
    """Wait until one more reload succeeded than `before` (from reloads());
    a failed one on the way fails the test with the log."""
    def done():
        ok, err = reloads(gw)
        if err != before[1]:
            raise tglib.TestFailure("%s: the reload failed:\n  %s" % (what, _log_tail(gw)))
        check(ok <= before[0] + 1, "%s: %d reloads instead of one" % (what, ok - before[0]))
        return ok == before[0] + 1
    tglib.wait_until(done, timeout, "%s: the reload to be counted" % what)


def wait_reload_error(gw, before, what, timeout=30):
    """Wait until one more reload failed than `before`; none may succeed."""
    def done():
        ok, err = reloads(gw)
        check_eq(ok, before[0], "%s: successful reloads" % what)
        return err == before[1] + 1
    tglib.wait_until(done, timeout, "%s: the failed reload to be counted" % what)


def cert_series(gw):
    """[(labels, value)] of tlsgate_certificate_expiry_timestamp_seconds."""
    return [(lb, v) for n, lb, v in gw.stats().series
            if n == "tlsgate_certificate_expiry_timestamp_seconds"]


def tlsgate_cmd(*args):
    return [tglib.tlsgate_path()] + list(args)


def run_reload_cmd(t, gw):
    """`tlsgate reload --pid-file` of this gateway; must exit 0."""
    r = t.run_cmd(tlsgate_cmd("reload", "--pid-file", gw.pid_path))
    check_eq(r.returncode, 0, "tlsgate reload exit status (%s)" % r.stderr.decode().strip())
    return r
