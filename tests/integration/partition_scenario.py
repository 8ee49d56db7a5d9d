"""A network partition cutting a partition's leader from its peers while
clients still reach it; run by ``test_network_partition.py`` inside a network
namespace of its own (``unshare -n``, as root), so that no firewall rule
touches the host. Prints one JSON object (the result) as its last line.

Addresses, all on the namespace's loopback:

- clients (the workload, the harness): 127.0.0.1;
- broker ``i``: 127.0.0.{i+1}, and its follower fetchers connect from it;
- etcd: 127.0.0.1 for the harness, and 127.0.0.{i+11} for broker ``i`` only
  (same port), so one broker can be cut off etcd alone.

The leader cut is the controller's own broker when the controller leads a
partition (it usually does: three partitions, leaders balanced), so that the
controller is cut off too and another broker must take over.

The cut: DROP every packet between the leader's address and each peer's,
both ways, and every packet to and from the leader's etcd address. Its registration
lease lapses, the controller moves its leaderships to a broker the others
reach, and the old leader, still reached by clients, accepts appends it can
never commit: acks=all must not acknowledge them. Healing deletes the rules;
the old leader re-registers, follows, truncates its uncommitted tail and
rejoins the ISR, and the workload's history is held to its checks.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import time
import traceback

from tests.integration import waiting

# Brokers cut off or restarting refuse connections and answer partly meanwhile.
wait_until = functools.partial(waiting.wait_until, interval=0.1, ignore=(OSError, ConnectionError, KeyError))

TOPIC = "cut"
PARTITIONS = 3
CONFIG = {"default.replication.factor": 3, "min.insync.replicas": 2,
          "offsets.topic.replication.factor": 3, "offsets.topic.num.partitions": 3,
          "replica.lag.time.max.ms": 3000, "replica.fetch.backoff.ms": 200,
          "replica.socket.timeout.ms": 3000, "broker.session.timeout.ms": 3000,
          "group.initial.rebalance.delay.ms": 0, "auto.leader.rebalance.enable": False}


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True, timeout=30)


def etcd_host(node_id: int) -> str:
    return f"127.0.0.{node_id + 11}"


def cut_rules(leader, peers) -> list[list[str]]:
    """The iptables rule specs cutting ``leader`` from ``peers`` and from its etcd address."""
    rules = []
    for p in peers:
        rules.append(["-s", leader.host, "-d", p.host, "-j", "DROP"])
        rules.append(["-s", p.host, "-d", leader.host, "-j", "DROP"])
    rules.append(["-d", etcd_host(leader.node_id), "-j", "DROP"])
    rules.append(["-s", etcd_host(leader.node_id), "-j", "DROP"])  # watch events too
    return rules


def controller_id(cluster) -> int:
    from odradek.cluster.local import metadata_request

    b = cluster.brokers[0]
    return metadata_request(b.host, b.port, topics=[])["controller_id"]


def produce_direct(address: str, partition: int, value: bytes, timeout_ms: int) -> int:
    """One acks=all Produce straight to ``address``; its error code."""
    from odradek.protocol.records import build_batch
    from tests.integration.rawclient import RawClient

    client = RawClient(address)
    try:
        client.sock.settimeout(timeout_ms / 1000 + 10)
        r = client.request("Produce", 9, {"acks": -1, "timeout_ms": timeout_ms, "topic_data": [
            {"name": TOPIC, "partition_data": [
                {"index": partition, "records": bytes(build_batch([(None, value, (), None)]))}]}]})
    finally:
        client.close()
    return r["responses"][0]["partition_responses"][0]["error_code"]


def run() -> dict:
    from confluent_kafka.admin import AdminClient, NewTopic

    from odradek.cluster.etcd_server import EtcdServer
    from odradek.cluster.local import Cluster
    from tests.integration.workload import Workload

    sh("ip", "link", "set", "lo", "up")
    result: dict = {}
    t0 = time.monotonic()
    etcd = EtcdServer(unsafe_no_fsync=True, extra_hosts=[etcd_host(i) for i in (1, 2, 3)]).start()
    try:
        with Cluster(3, hosts=True, etcd=etcd, config=CONFIG, start=False) as cluster:
            for b in cluster.brokers:
                b.etcd_endpoint = etcd.endpoint_on(etcd_host(b.node_id))
            cluster.start()
            admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
            admin.create_topics([NewTopic(TOPIC, PARTITIONS, 3)])[TOPIC].result(30)
            wait_until(lambda: all(len(cluster.metadata()[(TOPIC, p)].isr) == 3 for p in range(PARTITIONS)),
                       30, "a full ISR")
            work = Workload(cluster.bootstrap, TOPIC, PARTITIONS,
                            producer_conf={"request.timeout.ms": 4000}).start()
            work.wait_acked(100)

            # Cut the leader of a partition; the controller's, when it leads one, so that
            # the controller is cut off too and another broker must take over.
            md = cluster.metadata()
            controller = controller_id(cluster)
            part = next((p for p in range(PARTITIONS) if md[(TOPIC, p)].leader == controller), 0)
            before = md[(TOPIC, part)]
            cut = cluster.broker(before.leader)
            peers = [b for b in cluster.brokers if b is not cut]
            result.update(cut=cut.node_id, partition=part, controller_cut=controller == cut.node_id,
                          epoch_before=before.leader_epoch,
                          led_before=sorted(p for p in range(PARTITIONS)
                                            if cluster.metadata()[(TOPIC, p)].leader == cut.node_id))
            rules = cut_rules(cut, peers)
            for r in rules:
                sh("iptables", "-A", "INPUT", *r)
            t_cut = time.monotonic()
            try:
                # The cut leader still answers clients, and acks=all to it is never a success.
                result["direct_produce_error"] = produce_direct(cut.address, part, b"to-the-cut-leader", 2000)
                # The partition moves to a broker the others reach.
                wait_until(lambda: cluster.metadata(node_id=peers[0].node_id)[(TOPIC, part)].leader
                           not in (cut.node_id, None), 30, f"a new leader of partition {part}")
                moved = cluster.metadata(node_id=peers[0].node_id)
                result["moved_after_s"] = round(time.monotonic() - t_cut, 2)
                result["leader_after"] = moved[(TOPIC, part)].leader
                result["epoch_after"] = moved[(TOPIC, part)].leader_epoch
                result["leaders_during_cut"] = {p: moved[(TOPIC, p)].leader for p in range(PARTITIONS)}
                # Writes go on through the others while the old leader stays cut off.
                work.wait_acked(100, timeout=30)
                # The cut leader, asked by a client, may still think it leads.
                result["cut_leader_view"] = cluster.metadata(node_id=cut.node_id)[(TOPIC, part)].leader
                result["direct_produce_error_late"] = produce_direct(cut.address, part, b"late", 1000)
            finally:
                for r in rules:
                    sh("iptables", "-D", "INPUT", *r)
            t_heal = time.monotonic()
            wait_until(lambda: all(len(cluster.metadata(node_id=b.node_id)[(TOPIC, p)].isr) == 3
                                   for b in cluster.brokers for p in range(PARTITIONS)),
                       60, "every replica back in the ISR, as every broker sees it, after healing")
            result["isr_full_after_heal_s"] = round(time.monotonic() - t_heal, 2)
            work.wait_acked(50, timeout=30)
            work.stop()
            work.final_read(timeout=30)
            result["problems"] = work.check()
            result["cut_write_survived"] = b"to-the-cut-leader" in work.final.values()
            result["acked"] = len(work.acked)
            result["failed"] = len(work.failed)
            result["failures"] = sorted({why for _, why in work.failed})
            result["epochs_seen"] = sorted({(p, e) for _, p, e, _ in work.leaders})
            result["cut_log"] = cut.log_tail(6000)
            result["truncated"] = "truncat" in open(cut.log_path, errors="replace").read().lower()
    finally:
        etcd.stop()
    result["seconds"] = round(time.monotonic() - t0, 1)
    return result


def main() -> int:
    try:
        result = run()
    except Exception as e:
        result = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
