"""Fetch sessions (KIP-227): Fetch request size and broker CPU per fetch for a
consumer of many partitions, with sessions and without.

    python bench/fetch_sessions.py [--partitions 1000] [--seconds 15] [--rate 100] [--repeat 2]

For each mode, a fresh ``python -m odradek serve --memory``: "sessions" at the
defaults, "no sessions" with ``max.incremental.fetch.session.cache.slots=0``
(every full fetch is answered with session id 0, so the client keeps sending
full fetches), and with ``--baseline DIR`` "before": the odradek in DIR (say,
``git archive`` of a commit without sessions). Apache Kafka's Java consumer (kafka-clients 4.x, fetched by
bench/kafka_runtime.py) assigns every partition of one topic and reads it
(one record each, not measured); then, measured:

- busy: a producer in the same JVM writes ``--rate`` records/s of 100 B to
  random partitions for ``--seconds``; the consumer fetches
  (fetch.max.wait.ms=``--max-wait-ms``, 20 by default; fetch.min.bytes=1),
  so most fetches return one or a few records;
- idle: no producer for ``--seconds``: every fetch waits out its
  fetch.max.wait.ms.

The consumer reaches the broker through a counting TCP proxy in this process
(the broker advertises the proxy's port), which records the size of every
Fetch request and response. Broker CPU is the broker process's user+system
time (/proc) over the window, divided by the Fetch requests in it. The CPU of
this process, the proxy and the JVM is not counted, but they share the
machine's cores with the broker.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import random
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from broker_bench import free_port, wait_accepting  # noqa: E402

JAVA = r"""
import java.time.Duration;
import java.util.*;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.*;
import org.apache.kafka.common.serialization.*;

public class FetchSessionLoad {
  static long consumed = 0;

  static void poll(KafkaConsumer<byte[], byte[]> c, long ms) {
    long end = System.currentTimeMillis() + ms;
    while (System.currentTimeMillis() < end) consumed += c.poll(Duration.ofMillis(100)).count();
  }

  static double fetchTotal(KafkaConsumer<byte[], byte[]> c) {
    for (Map.Entry<MetricName, ? extends Metric> e : c.metrics().entrySet())
      if (e.getKey().name().equals("fetch-total") && e.getKey().group().equals("consumer-fetch-manager-metrics"))
        return ((Number) e.getValue().metricValue()).doubleValue();
    return -1;
  }

  public static void main(String[] a) throws Exception {
    String bs = a[0], topic = a[1];
    int parts = Integer.parseInt(a[2]);
    long ms = Long.parseLong(a[3]) * 1000;
    int rate = Integer.parseInt(a[4]);
    String maxWait = a[5];
    Properties ap = new Properties();
    ap.put("bootstrap.servers", bs);
    try (Admin admin = Admin.create(ap)) {
      admin.createTopics(List.of(new NewTopic(topic, parts, (short) 1))).all().get();
    }
    Properties pp = new Properties();
    pp.put("bootstrap.servers", bs);
    pp.put("linger.ms", "0");
    Properties cp = new Properties();
    cp.put("bootstrap.servers", bs);
    cp.put("group.id", "fetch-session-load");
    cp.put("enable.auto.commit", "false");
    cp.put("fetch.max.wait.ms", maxWait);
    try (KafkaProducer<byte[], byte[]> p = new KafkaProducer<>(pp, new ByteArraySerializer(), new ByteArraySerializer());
         KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(cp, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
      byte[] value = new byte[100];
      for (int q = 0; q < parts; q++) p.send(new ProducerRecord<>(topic, q, null, value));
      p.flush();
      List<TopicPartition> tps = new ArrayList<>();
      for (int q = 0; q < parts; q++) tps.add(new TopicPartition(topic, q));
      c.assign(tps);
      c.seekToBeginning(tps);
      long deadline = System.currentTimeMillis() + 120000;
      while (consumed < parts && System.currentTimeMillis() < deadline) consumed += c.poll(Duration.ofMillis(200)).count();
      poll(c, 1000);
      AtomicBoolean run = new AtomicBoolean(true);
      Thread producer = new Thread(() -> {
        Random rnd = new Random(1);
        long next = System.nanoTime();
        while (run.get()) {
          p.send(new ProducerRecord<>(topic, rnd.nextInt(parts), null, value));
          next += 1_000_000_000L / rate;
          long sleep = next - System.nanoTime();
          if (sleep > 0) try { Thread.sleep(sleep / 1_000_000, (int) (sleep % 1_000_000)); } catch (InterruptedException e) { return; }
        }
      });
      for (String phase : new String[] {"busy", "idle"}) {
        consumed = 0;
        double f0 = fetchTotal(c);
        System.out.println("start " + phase);
        System.out.flush();
        if (phase.equals("busy")) producer.start();
        poll(c, ms);
        if (phase.equals("busy")) { run.set(false); producer.join(); }
        System.out.println("end " + phase + " " + consumed + " " + (fetchTotal(c) - f0));
        System.out.flush();
        if (phase.equals("busy")) poll(c, 1500);  // drain before the idle window
      }
    }
  }
}
"""


class CountingProxy:
    """A TCP proxy that counts Fetch (api key 1) requests and their responses' bytes."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self.requests = []  # sizes of Fetch requests, whole frames
        self.responses = []
        self.versions = set()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()

    def snapshot(self) -> tuple[int, int]:
        return len(self.requests), len(self.responses)

    async def _pump(self, reader, writer, outbound: bool, pending: set):
        buf = bytearray()
        try:
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    break
                writer.write(data)
                buf += data
                while len(buf) >= 4:
                    size = struct.unpack_from(">i", buf, 0)[0]
                    if len(buf) < 4 + size:
                        break
                    if outbound:
                        key, version, corr = struct.unpack_from(">hhi", buf, 4)
                        if key == 1:
                            self.requests.append(4 + size)
                            self.versions.add(version)
                            pending.add(corr)
                    else:
                        corr = struct.unpack_from(">i", buf, 4)[0]
                        if corr in pending:
                            pending.discard(corr)
                            self.responses.append(4 + size)
                    del buf[:4 + size]
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _serve(self, creader, cwriter):
        sreader, swriter = await asyncio.open_connection("127.0.0.1", self.target_port)
        pending: set[int] = set()
        await asyncio.gather(self._pump(creader, swriter, True, pending),
                             self._pump(sreader, cwriter, False, pending))

    def start(self) -> "CountingProxy":
        def run():
            asyncio.set_event_loop(self.loop)
            server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
            self.ready.set()
            self.loop.run_forever()
            server.close()

        threading.Thread(target=run, daemon=True).start()
        self.ready.wait(10)
        return self

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def classpath() -> str:
    spec = importlib.util.spec_from_file_location("kafka_runtime", os.path.join(HERE, "kafka_runtime.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules["kafka_runtime"] = mod
    spec.loader.exec_module(mod)
    return mod.fetch(quiet=True).classpath


def compile_java(workdir: str, cp: str) -> None:
    src = os.path.join(workdir, "FetchSessionLoad.java")
    with open(src, "w") as f:
        f.write(JAVA)
    subprocess.run(["javac", "-cp", cp, "-d", workdir, src], check=True)


def run_mode(slots: str | None, args, workdir: str, cp: str, root: str = ROOT) -> dict:
    port = free_port()
    proxy = CountingProxy(port).start()
    cmd = [sys.executable, "-m", "odradek", "serve", "--memory", "--port", str(port), "--log-level", "WARNING",
           "-o", f"advertised.listeners=PLAINTEXT://127.0.0.1:{proxy.port}"]
    if slots is not None:
        cmd += ["-o", f"max.incremental.fetch.session.cache.slots={slots}"]
    env = dict(os.environ, PYTHONPATH=root)
    broker = subprocess.Popen(cmd, cwd=root, env=env)
    java = None
    try:
        wait_accepting(port, time.perf_counter(), broker)
        java = subprocess.Popen(["java", "-cp", f"{workdir}{os.pathsep}{cp}", "FetchSessionLoad",
                                 f"127.0.0.1:{proxy.port}", "load", str(args.partitions), str(args.seconds),
                                 str(args.rate), str(args.max_wait_ms)], stdout=subprocess.PIPE, text=True)
        result = {}
        marks = {}
        for line in java.stdout:
            words = line.split()
            if not words or words[0] not in ("start", "end"):
                continue
            now = (cpu_seconds(broker.pid), *proxy.snapshot())
            if words[0] == "start":
                marks[words[1]] = now
                continue
            phase, consumed, client_fetches = words[1], int(words[2]), float(words[3])
            cpu0, req0, resp0 = marks[phase]
            reqs = proxy.requests[req0:now[1]]
            resps = proxy.responses[resp0:now[2]]
            result[phase] = {
                "fetches": len(reqs), "client_fetches": int(client_fetches), "records": consumed,
                "request_bytes": statistics.mean(reqs) if reqs else 0,
                "response_bytes": statistics.mean(resps) if resps else 0,
                "cpu_ms_per_fetch": 1000 * (now[0] - cpu0) / max(len(reqs), 1),
                "broker_cpu_pct": 100 * (now[0] - cpu0) / args.seconds,
            }
        if java.wait(60) != 0:
            raise RuntimeError(f"the Java load exited with {java.returncode}")
        result["versions"] = sorted(proxy.versions)
        return result
    finally:
        if java and java.poll() is None:
            java.kill()
        broker.terminate()
        broker.wait(15)
        proxy.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--partitions", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--rate", type=int, default=100, help="records/s in the busy window")
    ap.add_argument("--max-wait-ms", type=int, default=20, help="the consumer's fetch.max.wait.ms")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--baseline", metavar="DIR",
                    help="also run odradek from DIR (e.g. `git archive` of an older commit) as 'before'")
    args = ap.parse_args()
    cp = classpath()
    modes = [("sessions", None, ROOT), ("no sessions", "0", ROOT)]
    if args.baseline:
        modes.append(("before", None, os.path.abspath(args.baseline)))
    runs = {name: [] for name, _, _ in modes}
    with tempfile.TemporaryDirectory() as workdir:
        compile_java(workdir, cp)
        for i in range(args.repeat):
            for name, slots, root in (modes if i % 2 == 0 else modes[::-1]):
                r = run_mode(slots, args, workdir, cp, root)
                runs[name].append(r)
                print(f"# {name}, run {i + 1}: {r}", file=sys.stderr)
    print(f"{args.partitions} partitions, {args.seconds} s windows, busy at {args.rate} records/s, "
          f"fetch.max.wait.ms={args.max_wait_ms}, medians of {args.repeat} runs; Fetch versions sent: {runs['sessions'][0]['versions']}\n")
    print("| window | mode | fetches | Fetch request, bytes | Fetch response, bytes | broker CPU per fetch, ms "
          "| broker CPU, % of a core |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for phase in ("busy", "idle"):
        for name, _, _ in modes:
            med = {k: statistics.median(r[phase][k] for r in runs[name])
                   for k in ("fetches", "request_bytes", "response_bytes", "cpu_ms_per_fetch", "broker_cpu_pct")}
            print(f"| {phase} | {name} | {med['fetches']:.0f} | {med['request_bytes']:,.0f} "
                  f"| {med['response_bytes']:,.0f} | {med['cpu_ms_per_fetch']:.2f} | {med['broker_cpu_pct']:.0f} |")


if __name__ == "__main__":
    random.seed(1)
    main()
