// A day of an application's Redis traffic through the proxy, with ioredis and its defaults.
// Usage: node redis_workload.js PORT. Prints "ok N" (N checks) when all passed; exits 1 on a
// wrong answer.
const Redis = require("ioredis");

const port = Number(process.argv[2]);
let checks = 0;
function check(got, want, what) {
  const g = JSON.stringify(got), w = JSON.stringify(want);
  if (g !== w) throw new Error(`${what}: got ${g}, want ${w}`);
  checks++;
}

(async () => {
  const r = new Redis({ host: "127.0.0.1", port, maxRetriesPerRequest: 1, enableOfflineQueue: true });
  check(await r.ping(), "PONG", "PING");
  check(await r.set("user:1:name", "ada"), "OK", "SET");
  check(await r.get("user:1:name"), "ada", "GET");
  check(await r.incrby("visits", 42), 42, "INCRBY");
  check(await r.set("session", "x", "EX", 100), "OK", "SET EX");
  const ttl = await r.ttl("session");
  check(ttl > 0 && ttl <= 100, true, "TTL");
  check(await r.hset("user:1", { name: "ada", lang: "en" }), 2, "HSET");
  check(await r.hgetall("user:1"), { name: "ada", lang: "en" }, "HGETALL");
  check(await r.rpush("queue", "a", "b", "c"), 3, "RPUSH");
  check(await r.lrange("queue", 0, -1), ["a", "b", "c"], "LRANGE");
  const keys = Array.from({ length: 50 }, (_, i) => `k:${i}`);
  check(await r.mset(...keys.flatMap((k, i) => [k, String(i)])), "OK", "MSET");
  check(await r.mget(...keys), keys.map((_, i) => String(i)), "MGET");
  check(await r.del(...keys.slice(0, 25)), 25, "DEL");
  const pipe = r.pipeline();
  for (let i = 0; i < 100; i++) pipe.set(`p:${i}`, i).get(`p:${i}`);
  const res = await pipe.exec();
  check(res.filter((_, i) => i % 2 === 1).map(([e, v]) => v), Array.from({ length: 100 }, (_, i) => String(i)), "pipeline");
  r.defineCommand("incrBy5", { numberOfKeys: 1, lua: "return redis.call('INCRBY', KEYS[1], 5)" });
  for (let i = 0; i < 20; i++) check(await r.incrBy5(`script:${i}`), 5, "defineCommand");
  await r.quit();
  console.log(`ok ${checks}`);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
