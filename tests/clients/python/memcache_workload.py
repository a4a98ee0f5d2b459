"""A day of an application's memcached traffic through the proxy, with pymemcache or
python-memcached, each with its default settings (pymemcache sends noreply by default).

Usage: memcache_workload.py PORT pymemcache|python-memcached. The last line printed is
"ok N" (N checks) when all passed; any wrong answer raises.
"""
import sys
import time

port = int(sys.argv[1])
which = sys.argv[2]
checks = 0


def check(got, want, what):
    global checks
    if got != want:
        raise AssertionError(f"{which} {what}: got {got!r}, want {want!r}")
    checks += 1


if which == "pymemcache":
    from pymemcache.client.base import Client

    c = Client(("127.0.0.1", port))
    c.set("name", b"ada")
    check(c.get("name"), b"ada", "get")
    values = {f"k:{i}": str(i).encode() for i in range(50)}
    check(c.set_many(values), [], "set_many")
    check(c.get_many(list(values)), values, "get_many")
    value, cas = c.gets("name")
    check(c.cas("name", b"bob", cas), True, "cas")
    check(c.cas("name", b"eve", cas), False, "cas stale")
    c.set("n", b"1")
    check(c.incr("n", 41), 42, "incr")
    check(c.decr("n", 2), 40, "decr")
    check(c.touch("n", 100), True, "touch")
    check(c.delete("name"), True, "delete")
    check(c.get("name"), None, "deleted")
    c.set("brief", b"x", expire=1)
    check(c.get("brief"), b"x", "before expiry")
    # Too large for the pool: refused; with noreply the client reads no error.
    c.set("big", b"v" * 2_000_000)
    check(c.get("k:1"), b"1", "after a refused noreply set")
    check(c.flush_all(), True, "flush_all")
    check(c.get("k:1"), None, "after flush_all")
else:
    import memcache

    c = memcache.Client([f"127.0.0.1:{port}"])
    check(c.set("name", "ada"), True, "set")
    check(c.get("name"), "ada", "get")
    values = {f"k:{i}": str(i) for i in range(50)}
    check(c.set_multi(values), [], "set_multi")
    check(c.get_multi(list(values)), values, "get_multi")
    c.cache_cas = True
    check(c.gets("name"), "ada", "gets")
    check(c.cas("name", "bob"), True, "cas")
    check(c.set("n", "1"), True, "set counter")
    check(c.incr("n", 41), 42, "incr")
    check(c.decr("n", 2), 40, "decr")
    check(c.touch("n", 100), True, "touch")
    check(c.delete("name"), True, "delete")
    check(c.get("name"), None, "deleted")
    check(c.flush_all(), None, "flush_all")
    check(c.get("k:1"), None, "after flush_all")
print(f"ok {checks}")
