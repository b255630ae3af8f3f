#!/usr/bin/env python3
"""bench/memhold.py: open N connections to a TLS endpoint and hold them.

    memhold.py MODE N PORT

MODE "tcp": plain TCP connections that send nothing (a connection flood that
never starts a handshake). MODE "hello": a ClientHello, then nothing: the
server answers with its whole first flight (its key operation done) and
waits for a Finished that never comes (connections mid-handshake). MODE
"tls": full TLS handshakes, then nothing (established idle connections). Prints "ready <n>" on stdout once every
connection is open (handshake done for "tls"), then holds them until stdin
closes or reaches EOF, closes them all and prints "closed". Used by
bench/memory.sh; loopback only.
"""
import asyncio
import ssl
import sys


async def main():
    mode, n, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    sem = asyncio.Semaphore(64)
    writers = []
    failed = 0

    def client_hello():
        # A real ClientHello from Python's ssl, taken from a memory BIO.
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return out.read()

    async def one():
        nonlocal failed
        async with sem:
            try:
                if mode == "hello":
                    r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
                    w.write(client_hello())
                    # The server's flight ends with its Finished (TLS 1.3):
                    # wait for some of it, so the key operation is done.
                    await asyncio.wait_for(r.read(1), 30)
                elif mode == "tls":
                    _, w = await asyncio.wait_for(asyncio.open_connection(
                        "127.0.0.1", port, ssl=ctx, server_hostname="localhost"), 30)
                else:
                    _, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
                writers.append(w)
            except (OSError, asyncio.TimeoutError, ssl.SSLError):
                failed += 1

    await asyncio.gather(*(one() for _ in range(n)))
    print("ready %d failed %d" % (len(writers), failed), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    for w in writers:
        w.transport.abort()
    print("closed", flush=True)


asyncio.run(main())
