#!/usr/bin/env python3
"""What a WAIT for one replica adds to a write: times SET alone against SET + WAIT 1 200 in one
pipeline, one command at a time on one connection, against a master that has a replica.

Usage: scripts/wait-cost.py MASTER_PORT N   (see docs/scale-out-sentinel.md)
"""
import socket, time, sys
port = int(sys.argv[1]); n = int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
f = s.makefile("rb")
def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out
def read():
    line = f.readline()
    if line[:1] == b"$":
        ln = int(line[1:]); 
        if ln >= 0: f.read(ln + 2)
    return line
def run(with_wait):
    t = []
    for i in range(n):
        msg = resp("SET", "measure:%d" % i, "1", "EX", "60")
        if with_wait: msg += resp("WAIT", "1", "200")
        a = time.perf_counter(); s.sendall(msg); read()
        if with_wait:
            r = read(); assert r == b":1\r\n", r
        t.append(time.perf_counter() - a)
    t.sort(); return t
for rnd in range(3):
    for w in (False, True):
        t = run(w)
        print("round %d %-10s median %6.1f us  p99 %6.1f us" % (rnd, "SET+WAIT" if w else "SET", t[len(t)//2]*1e6, t[int(len(t)*0.99)]*1e6))
