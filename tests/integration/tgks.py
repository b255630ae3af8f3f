"""tgks: the key server side of the integration tests.

A second, independent implementation of the key server protocol's client
side (docs/KEYSERVER-PROTOCOL.md), written from the document, so the tests
can speak it byte by byte (and mis-speak it on purpose), and a harness that
starts `tlsgate keyserver` (tglib.Proc, killed by PID at exit) and reads
its /stats.
"""
import hashlib
import re
import socket
import struct
import subprocess

import tglib
from tglib import TestFailure, check

# Message types and statuses, as the document numbers them.
HELLO, HELLO_REPLY, LOOKUP, LOOKUP_REPLY, SIGN, SIGN_REPLY, ERROR = range(1, 8)
STATUS = ["ok", "unknown_key", "bad_request", "busy", "failed", "shutting_down",
          "not_allowed", "protocol_error", "version", "limit"]
ALG_PKCS1, ALG_PSS, ALG_ECDSA = 1, 2, 3
MD_NONE, MD_SHA1, MD_SHA224, MD_SHA256, MD_SHA384, MD_SHA512 = range(6)


def frame(mtype, ident, body, version=1, flags=0):
    return struct.pack(">IBBHI", 8 + len(body), version, mtype, flags, ident) + body


def hello(max_in_flight=64, name=b"tgks test", version=1):
    return frame(HELLO, 0, struct.pack(">I", max_in_flight) + bytes([len(name)]) + name, version)


def lookup(ident, key_id):
    return frame(LOOKUP, ident, key_id)


def sign(ident, key_id, digest, alg=ALG_ECDSA, md=MD_SHA256, mgf1=MD_NONE, saltlen=0, hint=0):
    return frame(SIGN, ident, key_id + bytes([alg, md, mgf1, len(digest)])
                 + struct.pack(">HH", saltlen, hint) + digest)


def key_id_of_pem(pem_path):
    """SHA-256 of the DER SubjectPublicKeyInfo, with openssl (the document's definition)."""
    der = subprocess.run(["openssl", "pkey", "-in", pem_path, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return hashlib.sha256(der).digest()


def key_id_of_cert(cert_path):
    pub = subprocess.run(["openssl", "x509", "-in", cert_path, "-noout", "-pubkey"],
                         check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                         check=True, capture_output=True).stdout
    return hashlib.sha256(der).digest()


class Client:
    """A blocking protocol client on a Unix socket ("@name" = abstract)."""

    def __init__(self, path, timeout=10):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout * tglib.SCALE)
        self.s.connect("\0" + path[1:] if path.startswith("@") else path)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def read_frame(self):
        """(type, id, body), or None at EOF."""
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    f, self.buf = self.buf[:4 + n], self.buf[4 + n:]
                    _, version, mtype, flags, ident = struct.unpack(">IBBHI", f[:12])
                    check(version == 1 and flags == 0, "bad frame header %r" % f[:12])
                    return mtype, ident, f[12:]
            d = self.s.recv(65536)
            if not d:
                return None
            self.buf += d

    def hello(self, max_in_flight=64):
        self.send(hello(max_in_flight))
        t, _, body = self.read_frame()
        check(t == HELLO_REPLY and body[0] == 0, "hello refused: %r" % body)
        return struct.unpack(">I", body[1:5])[0]

    def sign_reply(self):
        """(id, status name, signature)."""
        t, ident, body = self.read_frame()
        check(t == SIGN_REPLY, "expected a sign reply, got type %d %r" % (t, body))
        n = struct.unpack(">H", body[1:3])[0]
        return ident, STATUS[body[0]], body[3:3 + n]

    def error(self):
        """(status name, text) of an ERROR frame, or None at EOF."""
        while True:
            f = self.read_frame()
            if f is None:
                return None
            t, _, body = f
            if t == ERROR:
                return STATUS[body[0]], body[2:2 + body[1]].decode()

    def eof(self):
        """True when the server closed the connection (after any frames)."""
        try:
            while self.read_frame() is not None:
                pass
            return True
        except (ConnectionResetError, BrokenPipeError):
            return True

    def close(self):
        self.s.close()


class KeyServer(tglib.Gateway):
    """A running `tlsgate keyserver` (admin, stats and stops as a gateway's)."""

    def __init__(self, t, cfg, name="keyserver", wait=True, user=None, extra_args=()):
        self.cfg_path = t.unique_path(name, ".yaml")
        with open(self.cfg_path, "w") as f:
            f.write(cfg if isinstance(cfg, str) else tglib.to_yaml(cfg) + "\n")
        argv = [tglib.tlsgate_path(), "keyserver", "--config", self.cfg_path,
                "--log-level", tglib.LOG_LEVEL] + list(extra_args)
        env = None
        if tglib.VALGRIND:
            argv, env = tglib.valgrind_wrap(t, argv)
        if user is not None:
            argv = ["setpriv", "--reuid", str(user[0]), "--regid", str(user[1]),
                    "--clear-groups"] + argv
        tglib.Proc.__init__(self, t, name, argv, env)
        self.ports = {}
        self.socket = (cfg if isinstance(cfg, dict) else {}).get("keyserver", {}).get("socket")
        self.admin_port = None
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout=30):
        def ready():
            if not self.alive():
                raise TestFailure("%s exited early with status %s" % (self.name, self.p.poll()))
            log = self.log()
            return re.search(r"keyserver ready", log) and log
        log = tglib.wait_until(ready, timeout, "%s to log 'ready'" % self.name)
        m = re.search(r"admin: listening on \S+ \(port (\d+)\)", log)
        if m:
            self.admin_port = int(m.group(1))
        return self


def ks_config(sock, keys, allowed_uids=None, allowed_gids=None, admin=True, **extra):
    """keys: [(key_path, cert_path or None, provider dict or None)]."""
    ks = {"socket": sock}
    if allowed_uids is not None:
        ks["allowed_uids"] = allowed_uids
    if allowed_gids is not None:
        ks["allowed_gids"] = allowed_gids
    ks.update(extra)
    entries = []
    for key, cert, prov in keys:
        e = {}
        if key is not None:
            e["private_key"] = {"filename": key}
        if cert is not None:
            e["certificate_chain"] = {"filename": cert}
        if prov is not None:
            e["private_key_provider"] = prov
        entries.append(e)
    cfg = {"keyserver": ks, "keys": entries}
    if admin:
        cfg["admin"] = {"address": "127.0.0.1:0"}
    return cfg


def remote_cert(cert, sock, **typed):
    """A gateway certificate entry whose key is in the key server."""
    tc = {"socket": sock}
    tc.update(typed)
    return {"certificate_chain": {"filename": cert},
            "private_key_provider": {"provider_name": "keyserver", "typed_config": tc}}


def verify_sig(pub_pem_path, digest, sig, t, alg="ecdsa"):
    """Check a signature over a digest with openssl pkeyutl."""
    dpath = t.unique_path("digest", ".bin")
    spath = t.unique_path("sig", ".bin")
    with open(dpath, "wb") as f:
        f.write(digest)
    with open(spath, "wb") as f:
        f.write(sig)
    argv = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", pub_pem_path, "-in", dpath,
            "-sigfile", spath]
    if alg == "pss":
        argv += ["-pkeyopt", "rsa_padding_mode:pss", "-pkeyopt", "digest:sha256",
                 "-pkeyopt", "rsa_pss_saltlen:32"]
    elif alg == "pkcs1":
        argv += ["-pkeyopt", "digest:sha256"]
    r = subprocess.run(argv, capture_output=True)
    return r.returncode == 0


def pubkey_pem(t, cert):
    path = t.unique_path("pub", ".pem")
    with open(path, "wb") as f:
        f.write(subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-pubkey"], check=True,
                               capture_output=True).stdout)
    return path



def rsa_primes(key_path):
    """(n, p, q) of an RSA private key file, as big-endian bytes (openssl -text)."""
    txt = subprocess.run(["openssl", "rsa", "-in", key_path, "-noout", "-text"], check=True,
                         capture_output=True).stdout.decode()
    out = {}
    for name in ("modulus", "prime1", "prime2"):
        m = re.search(r"^%s:\n((?:\s+[0-9a-f:]+\n)+)" % name, txt, re.M)
        check(m is not None, "no %s in the key" % name)
        out[name] = bytes.fromhex(re.sub(r"[\s:]", "", m.group(1))).lstrip(b"\0")
    return out["modulus"], out["prime1"], out["prime2"]


def scan_memory(pid, needles, chunk=16 << 20):
    """{name: found} for each (name, bytes) in needles, searched big- and
    little-endian in every readable mapping of pid up to 4 GiB (through
    /proc/PID/mem; needs ptrace rights over it: root, or the same user)."""
    found = {name: False for name, _ in needles}
    pats = [(name, b) for name, v in needles for b in (v, v[::-1])]
    longest = max(len(b) for _, b in pats)
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for ln in maps:
            parts = ln.split()
            if "r" not in parts[1] or (len(parts) > 5 and parts[5] in ("[vvar]", "[vsyscall]")):
                continue
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if hi - lo > (4 << 30):
                continue  # a sanitizer's shadow memory, not the program's data
            off, tail = lo, b""
            while off < hi:
                n = min(chunk, hi - off)
                try:
                    mem.seek(off)
                    data = tail + mem.read(n)
                except (OSError, ValueError, OverflowError):
                    break
                for name, b in pats:
                    if not found[name] and b in data:
                        found[name] = True
                tail = data[-(longest - 1):]
                off += n
    return found
