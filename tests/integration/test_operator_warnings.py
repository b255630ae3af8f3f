#!/usr/bin/env python3
"""The warnings an operator needs, from the real binary: in the start-up log
of `tlsgate run` and on stderr of `tlsgate check-config` (exit status 0:
warnings do not stop anything).

1. A clean configuration (key 0600, a certificate valid for 400 days,
   admin on 127.0.0.1): no warning anywhere.
2. The private key readable by every user (0644), or by a group tlsgate
   does not need (0640 on a file tlsgate owns): a warning naming the file,
   its mode and who can read it, at the key's FILE:LINE:COL.
3. A certificate that expires in 5 days (certificate_expiry_warning 30d by
   default, then 3d: no warning), and one that expired in 2020 (made with
   `openssl ca -startdate/-enddate`; tlsgate still serves it). /stats
   exports each certificate's not-after exactly as `openssl x509 -enddate`
   reads it.
4. The admin endpoint on 0.0.0.0 without admin.allowed_sources: a warning;
   with allowed_sources: none. allowed_sources is enforced: after a reload
   to [10.0.0.0/8] a client on 127.0.0.1 is closed before any byte, and
   after a reload back the refusal is counted in
   tlsgate_admin_connections_refused_total.
"""
import calendar
import os
import re
import signal
import socket
import subprocess
import time

import tglib
from tglib import check, check_eq

WARN = re.compile(r" warn: (.*)$", re.M)


def make_cert(t, name, days=400):
    c, k = t.path(name + ".pem"), t.path(name + ".key")
    r = t.run_cmd(["openssl", "req", "-x509", "-nodes", "-days", str(days), "-subj", "/CN=a.test",
                   "-addext", "subjectAltName=DNS:a.test", "-newkey", "ec", "-pkeyopt",
                   "ec_paramgen_curve:P-256", "-keyout", k, "-out", c])
    check(r.returncode == 0, "openssl req: %s" % r.stderr.decode()[-300:])
    os.chmod(k, 0o600)
    return c, k


def make_expired_cert(t):
    """A certificate valid from 2020-01-01 to 2020-02-01 (openssl ca -selfsign)."""
    d = t.path("ca")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "ca.cnf"), "w") as f:
        f.write("[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\n"
                "serial = serial\ndefault_md = sha256\npolicy = p\nunique_subject = no\n"
                "copy_extensions = copy\n[p]\ncommonName = supplied\n")
    open(os.path.join(d, "index.txt"), "w").close()
    with open(os.path.join(d, "serial"), "w") as f:
        f.write("01\n")
    key, csr, cert = (os.path.join(d, n) for n in ("old.key", "old.csr", "old.pem"))
    r = t.run_cmd(["openssl", "req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt",
                   "ec_paramgen_curve:P-256", "-subj", "/CN=a.test", "-addext",
                   "subjectAltName=DNS:a.test", "-keyout", key, "-out", csr])
    check(r.returncode == 0, "openssl req -new: %s" % r.stderr.decode()[-300:])
    r = subprocess.run(["openssl", "ca", "-batch", "-config", "ca.cnf", "-selfsign", "-keyfile",
                        key, "-in", csr, "-startdate", "20200101000000Z", "-enddate",
                        "20200201000000Z", "-out", cert], cwd=d, capture_output=True,
                       timeout=30 * tglib.SCALE)
    check(r.returncode == 0, "openssl ca: %s" % r.stderr.decode()[-300:])
    os.chmod(key, 0o600)
    return cert, key


def not_after(t, cert):
    r = t.run_cmd(["openssl", "x509", "-noout", "-enddate", "-in", cert])
    text = r.stdout.decode().strip().split("=", 1)[1]
    return calendar.timegm(time.strptime(text, "%b %d %H:%M:%S %Y %Z"))


def config(up, cert, key, admin="127.0.0.1:0", allowed=None, extra=""):
    a = "admin: { address: \"%s\"%s }\n" % (
        admin, ", allowed_sources: [%s]" % ", ".join(allowed) if allowed else "")
    return a + extra + """listeners:
  - name: l0
    address: 127.0.0.1:0
    tls:
      certificates:
        - certificate_chain: { filename: %s }
          private_key: { filename: %s }
    upstream: { address: %s }
""" % (cert, key, up)


def check_config(t, path):
    """(stdout, [warning lines]) of `tlsgate check-config`; must exit 0."""
    r = t.run_cmd([tglib.tlsgate_path(), "check-config", path])
    out, err = r.stdout.decode(), r.stderr.decode()
    check_eq(r.returncode, 0, "check-config exit status (stderr: %s)" % err)
    check("configuration OK" in out, "check-config stdout: %r" % out)
    lines = err.splitlines()
    for ln in lines:
        check(ln.startswith("tlsgate: warning: "), "unexpected stderr line %r" % ln)
    return out, [ln[len("tlsgate: warning: "):] for ln in lines]


def both(t, name, cfg):
    """Warnings of check-config and of a gateway's start-up log (the same
    lines); returns (gateway, warnings)."""
    path = t.path(name + ".yaml")
    with open(path, "w") as f:
        f.write(cfg)
    _, cc = check_config(t, path)
    gw = t.gateway(cfg, name=name)
    run = WARN.findall(gw.log())
    # The gateway's file is its own copy: compare past the file name. The two
    # ran at different moments: "in 5 days" may have become "in 4 days".
    def strip(ls):
        return [re.sub(r"(in \d+ (days|hours?))|(\d+ (days|hours?) ago)", "<span>",
                       re.sub(r"^\S+?\.yaml:", "", x)) for x in ls]
    check_eq(strip(run), strip(cc), "warnings of run vs check-config")
    return gw, run


def admin_bytes(gw):
    """What a GET /ready on the admin port gets back: bytes, b"" for a close,
    None for a reset."""
    try:
        with socket.create_connection(("127.0.0.1", gw.admin_port),
                                      timeout=5 * tglib.SCALE) as s:
            s.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while True:
                d = s.recv(4096)
                if not d:
                    return data
                data += d
    except (ConnectionResetError, BrokenPipeError):
        return None


def main(t):
    up = t.upstream("echo")
    cert, key = make_cert(t, "good")

    with t.case("a clean configuration: no warning"):
        gw, w = both(t, "clean", config(up.addr, cert, key))
        check_eq(w, [], "warnings")
        gw.stop_ok()

    with t.case("a private key every user can read"):
        os.chmod(key, 0o644)
        gw, w = both(t, "key0644", config(up.addr, cert, key))
        check_eq(len(w), 1, "warnings: %r" % w)
        check(re.search(r"\.yaml:8:36: listeners\[0\]\.tls\.certificates\[0\]\.private_key: '%s' "
                        r"\(mode 0644\) can be read by every user of this machine: make the "
                        r"private key readable by the user tlsgate runs as only"
                        % re.escape(key), w[0]), "warning: %r" % w[0])
        gw.stop_ok()

    with t.case("a private key its group can read, tlsgate being its owner"):
        os.chmod(key, 0o640)
        gw, w = both(t, "key0640", config(up.addr, cert, key))
        check_eq(len(w), 1, "warnings: %r" % w)
        check(re.search(r"\(mode 0640\) can be read by group '?[^ ]+'? \(gid %d\)" %
                        os.stat(key).st_gid, w[0]), "warning: %r" % w[0])
        gw.stop_ok()
        os.chmod(key, 0o600)

    soon, soon_key = make_cert(t, "soon", days=5)
    with t.case("a certificate that expires in 5 days"):
        gw, w = both(t, "soon", config(up.addr, soon, soon_key))
        check_eq(len(w), 1, "warnings: %r" % w)
        check(re.search(r"\.yaml:7:42: listeners\[0\]\.tls\.certificates\[0\]\.certificate_chain: "
                        r"the certificate for \[a\.test\] \(serial [0-9A-F]+\) expires in [45] "
                        r"days \(not after \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, "
                        r"certificate_expiry_warning: 30d\): renew it$", w[0]),
              "warning: %r" % w[0])
        check_eq(gw.stats()("tlsgate_certificate_expiry_timestamp_seconds"), not_after(t, soon),
                 "not-after in /stats")
        gw.stop_ok()
    with t.case("certificate_expiry_warning: 3d: no warning for it"):
        gw, w = both(t, "soon3d", config(up.addr, soon, soon_key,
                                         extra="certificate_expiry_warning: 3d\n"))
        check_eq(w, [], "warnings")
        gw.stop_ok()

    old, old_key = make_expired_cert(t)
    with t.case("an expired certificate: warned, still served, not-after in /stats"):
        gw, w = both(t, "expired", config(up.addr, old, old_key))
        check_eq(len(w), 1, "warnings: %r" % w)
        check(re.search(r"certificate_chain: the certificate for \[a\.test\] \(serial 01\) has "
                        r"EXPIRED, \d+ days ago \(not after 2020-02-01 00:00:00 UTC\): clients "
                        r"refuse it; renew it$", w[0]), "warning: %r" % w[0])
        st = gw.stats()
        series = [(lb, v) for n, lb, v in st.series
                  if n == "tlsgate_certificate_expiry_timestamp_seconds"]
        check_eq(series, [({"listener": "l0", "names": "a.test", "serial": "01"},
                           float(not_after(t, old)))], "/stats certificate series")
        check_eq(not_after(t, old), 1580515200, "openssl's not-after")
        s = tglib.tls_connect(gw.port)
        s.sendall(b"ping")
        check_eq(s.recv(4), b"ping", "served with the expired certificate")
        s.close()
        gw.stop_ok()

    with t.case("the admin endpoint on 0.0.0.0 without allowed_sources"):
        gw, w = both(t, "admin-any", config(up.addr, cert, key, admin="0.0.0.0:0"))
        check_eq(len(w), 1, "warnings: %r" % w)
        check(re.search(r"\.yaml:1:19: admin\.address: 0\.0\.0\.0:0 is not a loopback address and "
                        r"admin\.allowed_sources is not set: anyone who can reach this port "
                        r"reads /stats", w[0]), "warning: %r" % w[0])
        gw.stop_ok()

    with t.case("allowed_sources: no warning, and enforced (changed by reloads)"):
        cfg_ok = config(up.addr, cert, key, admin="0.0.0.0:0", allowed=["127.0.0.0/8", "\"::1\""])
        gw, w = both(t, "admin-allowed", cfg_ok)
        check_eq(w, [], "warnings")
        with open(gw.cfg_path, "w") as f:
            f.write(config(up.addr, cert, key, admin="0.0.0.0:0", allowed=["10.0.0.0/8"]))
        gw.signal(signal.SIGHUP)
        tglib.wait_until(lambda: "generation 2 serves" in gw.log(), 20, "reload 2")
        got = admin_bytes(gw)
        check(got is None or got == b"", "a client outside allowed_sources got %r" % (got,))
        with open(gw.cfg_path, "w") as f:
            f.write(cfg_ok)
        gw.signal(signal.SIGHUP)
        tglib.wait_until(lambda: "generation 3 serves" in gw.log(), 20, "reload 3")
        check(gw.stats()("tlsgate_admin_connections_refused_total") >= 1, "refusal counted")
        gw.stop_ok()


tglib.run(main, timeout=240)
