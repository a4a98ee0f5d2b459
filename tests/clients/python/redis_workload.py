"""A day of an application's Redis traffic through the proxy, with redis-py.

Usage: redis_workload.py PORT [--protocol 2|3|default]. Every check raises on a wrong answer;
the last line printed is "ok N" (N checks) when all passed.
"""
import os
import sys
import time
import warnings

import redis

port = int(sys.argv[1])
protocol = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--protocol" else "default"
kwargs = {} if protocol == "default" else {"protocol": int(protocol)}
checks = 0
# Keys of this run only: several runs share one pool.
P = f"{os.getpid()}:"


def check(got, want, what):
    global checks
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")
    checks += 1


with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    r = redis.Redis(host="127.0.0.1", port=port, decode_responses=True, **kwargs)
    check(r.ping(), True, "PING")

# Strings, counters, expiry.
check(r.set(P + "user:1:name", "ada"), True, "SET")
check(r.get(P + "user:1:name"), "ada", "GET")
check(r.incr(P + "visits"), 1, "INCR")
check(r.incrby(P + "visits", 41), 42, "INCRBY")
check(r.set(P + "session", "x", ex=100), True, "SET EX")
check(0 < r.ttl(P + "session") <= 100, True, "TTL")
check(r.set(P + "brief", "x", px=1), True, "SET PX")
time.sleep(0.05)
check(r.get(P + "brief"), None, "expired key")

# Hashes, lists, sets, sorted sets.
check(r.hset(P + "user:1", mapping={"name": "ada", "lang": "en"}), 2, "HSET")
check(r.hgetall(P + "user:1"), {"name": "ada", "lang": "en"}, "HGETALL")
check(r.rpush(P + "queue", "a", "b", "c"), 3, "RPUSH")
check(r.lrange(P + "queue", 0, -1), ["a", "b", "c"], "LRANGE")
check(r.sadd(P + "tags", "x", "y"), 2, "SADD")
check(r.smembers(P + "tags"), {"x", "y"}, "SMEMBERS")
check(r.zadd(P + "board", {"p1": 10, "p2": 20}), 2, "ZADD")
check(r.zrange(P + "board", 0, -1, withscores=True), [("p1", 10.0), ("p2", 20.0)], "ZRANGE")

# Multi-key commands across the pool's servers.
many = {f"{P}k:{i}": str(i) for i in range(50)}
check(r.mset(many), True, "MSET")
check(r.mget(list(many)), list(many.values()), "MGET")
check(r.exists(*many), 50, "EXISTS")
check(r.delete(*list(many)[:25]), 25, "DEL")
check(r.mget(list(many))[:25], [None] * 25, "MGET after DEL")

# A pipeline of 200 commands (no transaction: MULTI cannot span servers).
pipe = r.pipeline(transaction=False)
for i in range(100):
    pipe.set(f"{P}p:{i}", i)
    pipe.get(f"{P}p:{i}")
results = pipe.execute()
check(results[1::2], [str(i) for i in range(100)], "pipeline")

# Scripts: register_script runs EVALSHA (and loads the script on NOSCRIPT); Lock uses
# scripts to release and extend.
incr_by = r.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
for i in range(20):
    check(incr_by(keys=[f"{P}script:{i}"], args=[5]), 5, "register_script")
lock = r.lock(P + "resource", timeout=10)
check(lock.acquire(blocking=False), True, "Lock.acquire")
check(r.lock(P + "resource", timeout=10).acquire(blocking=False), False, "Lock held")
lock.release()
check(r.lock(P + "resource", timeout=10).acquire(blocking=False), True, "Lock after release")

for w in caught:
    print(f"warning: {w.message}")
print(f"ok {checks}")
