#!/usr/bin/env python3
"""Search every readable mapping of a running process for byte strings.

    p11_memscan.py PID KEYFILE

KEYFILE is an RSA private key (PEM). Its primes p and q are searched in
big-endian and little-endian byte order (OpenSSL's BIGNUMs are arrays of
little-endian words: little-endian bytes on x86-64) in every mapping of
/proc/PID/maps that is readable, through /proc/PID/mem (except mappings of
more than 1 GiB: AddressSanitizer's shadow). The public modulus
n is searched too, as a positive control: a process serving the
certificate holds it, so not finding it means the scan is broken. Prints
one line per pattern with the number of hits and where. Exit status: 0 the
modulus was found and no prime was; 1 a prime was found; 2 the modulus was
not found (the scan proves nothing) or a usage error; 3 the memory cannot
be read. Needs ptrace access to PID (root, or kernel.yama.ptrace_scope 0
and the same user).
"""
import re
import subprocess
import sys


def primes(keyfile):
    out = subprocess.run(["openssl", "rsa", "-in", keyfile, "-noout", "-text"],
                         check=True, capture_output=True, text=True).stdout
    found = {}
    for name in ("modulus", "prime1", "prime2"):
        m = re.search(name + r":\s*\n((?:\s+[0-9a-f:]+\n)+)", out)
        hexs = re.sub(r"[^0-9a-f]", "", m.group(1))
        n = int(hexs, 16)
        found[name] = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return found


CHUNK = 16 << 20  # big mappings are read piecewise
# AddressSanitizer's shadow memory is one readable mapping of terabytes: it
# holds shadow bytes, never program data, and reading it would take hours.
HUGE = 1 << 30


def scan(pid, patterns):
    hits = {k: set() for k in patterns}
    skipped = []
    overlap = max(len(p) for p in patterns.values()) - 1
    regions = 0
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            f = line.split()
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            if "r" not in f[1] or (len(f) > 5 and f[5] in ("[vvar]", "[vsyscall]")):
                continue
            name = f[5] if len(f) > 5 else "anon"
            if hi - lo > HUGE:
                skipped.append("%x-%x (%d GiB)" % (lo, hi, (hi - lo) >> 30))
                continue
            regions += 1
            at = lo
            while at < hi:
                n = min(CHUNK + overlap, hi - at)
                try:
                    mem.seek(at)
                    data = mem.read(n)
                except (OSError, ValueError, OverflowError):
                    data = b""  # unreadable piece (guard page): skip it
                for k, pat in patterns.items():
                    i = data.find(pat)
                    while i >= 0:
                        hits[k].add("%x (%s)" % (at + i, name))
                        i = data.find(pat, i + 1)
                at += CHUNK
    return regions, skipped, {k: sorted(v) for k, v in hits.items()}


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    pid, keyfile = sys.argv[1], sys.argv[2]
    patterns = {}
    for name, be in primes(keyfile).items():
        patterns[name + " big-endian"] = be
        patterns[name + " little-endian"] = be[::-1]
    try:
        regions, skipped, hits = scan(pid, patterns)
    except OSError as e:
        print(f"cannot read the memory of {pid}: {e}", file=sys.stderr)
        return 3
    primes_found = control = 0
    for k, where in hits.items():
        if k.startswith("modulus"):
            control += len(where)
        else:
            primes_found += len(where)
        print(f"{k} ({len(patterns[k])} bytes): {len(where)} hit(s)" +
              (": " + ", ".join(where[:5]) if where else ""))
    print(f"scanned {regions} readable mappings of process {pid}" +
          (f"; skipped mappings over 1 GiB (sanitizer shadow): {', '.join(skipped)}"
           if skipped else ""))
    if control == 0:
        print("the public modulus was not found: the scan is not working", file=sys.stderr)
        return 2
    return 1 if primes_found else 0


if __name__ == "__main__":
    sys.exit(main())
