"""tg_pki: a small certificate authority for the client-certificate tests,
made with the `openssl` command line only (`openssl req` for the root,
`openssl ca` for everything it signs, so that validity dates can lie in the
past or the future, certificates can be revoked and CRLs made).

    ca = tg_pki.CA(t.path("pki"), "root", "Test Root CA")
    cert, key = ca.issue("alice", "alice", sans=["DNS:alice.test", "URI:spiffe://t/alice"])
    old, okey = ca.issue("old", "old", start="20200101000000Z", end="20200201000000Z")
    ca.revoke(cert)
    crl = ca.crl()                      # PEM, valid 2 days
    inter = ca.sub_ca("inter", "Test Intermediate CA")

Every file lives under the directory given; nothing else is touched.
"""
import os
import subprocess

CNF = """
[ ca ]
default_ca = this

[ this ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/issued
serial = $dir/serial
crlnumber = $dir/crlnumber
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
default_days = 2
default_crl_days = 2
policy = anything
unique_subject = no
copy_extensions = copy
email_in_dn = no

[ anything ]
commonName = supplied
organizationName = optional

[ client ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ server_only ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth

[ sub_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def _run(argv, cwd=None):
    r = subprocess.run(argv, capture_output=True, timeout=60, cwd=cwd)
    if r.returncode != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(argv[:3]),
                                             (r.stdout + r.stderr).decode("utf-8", "replace")[-800:]))
    return r.stdout


def _newkey(kind):
    return (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if kind == "ec"
            else ["-newkey", "rsa:2048"])


class CA:
    """A CA in directory root/name: ca.pem, ca.key, its database and CRLs.
    With cert/key given, an existing certificate (an intermediate) is used
    instead of a new self-signed root."""

    def __init__(self, root, name, cn, kind="ec", cert=None, key=None):
        self.dir = os.path.join(root, name)
        self.name = name
        os.makedirs(os.path.join(self.dir, "issued"), exist_ok=True)
        self.cert = os.path.join(self.dir, "ca.pem")
        self.key = os.path.join(self.dir, "ca.key")
        self.cnf = os.path.join(self.dir, "openssl.cnf")
        with open(self.cnf, "w") as f:
            f.write(CNF.format(dir=self.dir))
        open(os.path.join(self.dir, "index.txt"), "w").close()
        with open(os.path.join(self.dir, "serial"), "w") as f:
            f.write(os.urandom(8).hex().upper() + "\n")
        with open(os.path.join(self.dir, "crlnumber"), "w") as f:
            f.write("01\n")
        if cert is not None:
            with open(cert, "rb") as src, open(self.cert, "wb") as dst:
                dst.write(src.read())
            with open(key, "rb") as src, open(self.key, "wb") as dst:
                dst.write(src.read())
            return
        _run(["openssl", "req", "-x509", "-nodes", "-days", "3", "-subj", "/O=tlsgate tests/CN=" + cn,
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign",
              "-keyout", self.key, "-out", self.cert] + _newkey(kind))

    def issue(self, name, cn, sans=None, start=None, end=None, ext="client", kind="ec"):
        """A certificate for CN=cn signed by this CA: (cert, key) paths.
        sans: ["DNS:a.test", "IP:127.0.0.1", "URI:...", "email:..."];
        start/end: YYYYMMDDHHMMSSZ (default: now, 2 days); ext: section of
        the extensions (client, server_only, sub_ca)."""
        cert = os.path.join(self.dir, name + ".pem")
        key = os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        req = ["openssl", "req", "-new", "-nodes", "-subj", "/O=tlsgate tests/CN=" + cn,
               "-keyout", key, "-out", csr] + _newkey(kind)
        if sans:
            req += ["-addext", "subjectAltName=" + ",".join(sans)]
        _run(req)
        argv = ["openssl", "ca", "-batch", "-notext", "-config", self.cnf, "-extensions", ext,
                "-in", csr, "-out", cert]
        if start:
            argv += ["-startdate", start]
        if end:
            argv += ["-enddate", end]
        _run(argv)
        return cert, key

    def sub_ca(self, name, cn):
        """An intermediate CA signed by this one."""
        cert, key = self.issue(name + "-ca", cn, ext="sub_ca")
        return CA(os.path.dirname(self.dir), name, cn, cert=cert, key=key)

    def revoke(self, cert):
        _run(["openssl", "ca", "-batch", "-config", self.cnf, "-revoke", cert,
              "-crl_reason", "keyCompromise"])

    def crl(self, path=None, last=None, nxt=None):
        """A CRL of what was revoked so far, as a PEM file (default
        DIR/crl.pem); last/nxt: lastUpdate/nextUpdate (YYYYMMDDHHMMSSZ),
        default now and in 2 days."""
        path = path or os.path.join(self.dir, "crl.pem")
        argv = ["openssl", "ca", "-batch", "-config", self.cnf, "-gencrl", "-out", path]
        if last:
            argv += ["-crl_lastupdate", last]
        if nxt:
            argv += ["-crl_nextupdate", nxt]
        _run(argv)
        return path

    def fingerprint(self, cert):
        """SHA-256 of a certificate, lower-case hex without colons."""
        return fingerprint(cert)


def fingerprint(cert):
    out = _run(["openssl", "x509", "-in", cert, "-noout", "-fingerprint", "-sha256"]).decode()
    return out.strip().split("=", 1)[1].replace(":", "").lower()


def subject(cert):
    """The subject in RFC 2253 form, as tlsgate reports it."""
    out = _run(["openssl", "x509", "-in", cert, "-noout", "-subject", "-nameopt", "RFC2253"])
    return out.decode().strip().split("=", 1)[1]


def concat(path, *parts):
    """Write the PEM files parts one after the other into path."""
    with open(path, "wb") as f:
        for p in parts:
            with open(p, "rb") as src:
                f.write(src.read())
    return path
