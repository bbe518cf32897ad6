#!/usr/bin/env python3
"""Drives a memcached-compatible server with the pymemcache client library.

Usage: pymemcache_check.py PORT  (the server listens on 127.0.0.1:PORT)

Exercises get_many, set/add/replace/append/prepend, gets/cas, delete, incr/decr,
touch, flush_all, version and noreply, checking every result; exits 0 and prints
"pymemcache: all checks passed" on success, raises (exit 1) on the first mismatch.
"""

import sys

from pymemcache.client.base import Client


def check(what, got, expected):
    if got != expected:
        raise AssertionError(f"{what}: got {got!r}, expected {expected!r}")


def main():
    port = int(sys.argv[1])
    c = Client(("127.0.0.1", port), connect_timeout=5, timeout=5, default_noreply=False)

    check("version", c.version(), b"1.6.0-paste-rt")
    check("get missing", c.get("missing"), None)

    check("set", c.set("a", b"alpha", expire=0, noreply=False), True)
    check("set with flags", c.set("b", b"beta"), True)
    check("get", c.get("a"), b"alpha")
    check("get_many", c.get_many(["a", "b", "missing"]), {"a": b"alpha", "b": b"beta"})

    check("add existing", c.add("a", b"x", noreply=False), False)
    check("add new", c.add("c", b"gamma", noreply=False), True)
    check("replace missing", c.replace("nope", b"x", noreply=False), False)
    check("replace existing", c.replace("c", b"GAMMA", noreply=False), True)
    check("append", c.append("a", b"-end", noreply=False), True)
    check("prepend", c.prepend("a", b"start-", noreply=False), True)
    check("after append/prepend", c.get("a"), b"start-alpha-end")
    check("append missing", c.append("nope", b"x", noreply=False), False)

    value, cas = c.gets("c")
    check("gets value", value, b"GAMMA")
    check("cas stale", c.cas("c", b"stale", str(int(cas) + 1).encode(), noreply=False), False)
    check("cas current", c.cas("c", b"fresh", cas, noreply=False), True)
    check("cas missing", c.cas("nope", b"x", b"1", noreply=False), None)
    check("after cas", c.get("c"), b"fresh")
    multi = c.gets_many(["a", "c"])
    check("gets_many keys", sorted(multi), ["a", "c"])

    check("set counter", c.set("n", b"10", noreply=False), True)
    check("incr", c.incr("n", 5, noreply=False), 15)
    check("decr", c.decr("n", 20, noreply=False), 0)
    check("incr missing", c.incr("nope", 1, noreply=False), None)

    check("touch", c.touch("a", expire=100, noreply=False), True)
    check("touch missing", c.touch("nope", expire=100, noreply=False), False)

    check("delete", c.delete("b", noreply=False), True)
    check("delete again", c.delete("b", noreply=False), False)

    # noreply: nothing comes back, and the next command's reply is not confused.
    c.set("q", b"quiet", noreply=True)
    c.incr("n", 7, noreply=True)
    c.delete("c", noreply=True)
    # "15" decremented to "0" was rewritten in place, space-padded, as memcached does.
    check("after noreply", c.get_many(["q", "n", "c"]), {"q": b"quiet", "n": b"7 "})

    # A value larger than one pool buffer, and a binary one.
    big = bytes(range(256)) * 300
    check("set big", c.set("big", big, noreply=False), True)
    check("get big", c.get("big"), big)

    check("flush_all", c.flush_all(noreply=False), True)
    check("after flush_all", c.get_many(["a", "q", "n", "big"]), {})

    c.quit()
    print("pymemcache: all checks passed")


if __name__ == "__main__":
    main()
