"""A consume-transform-produce loop in transactions, run as its own process by
tests/integration/test_transactions_crash.py (which kills it):

    python -m tests.integration.txn_copier BOOTSTRAP IN OUT GROUP TXN_ID

It copies IN to OUT ("in-N" becomes "out-N") a few records per transaction,
the input offsets committed in the same transaction; on any error it starts
over with new clients (the new producer fences the old one)."""

from __future__ import annotations

import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition


def clients(bootstrap, src, group, txn_id):
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id,
                  "transaction.timeout.ms": 10000, "message.timeout.ms": 10000})
    p.init_transactions(30)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    committed = c.committed([TopicPartition(src, 0)], timeout=10)[0].offset
    c.assign([TopicPartition(src, 0, committed if committed >= 0 else 0)])
    return p, c


def main(bootstrap, src, dst, group, txn_id):
    while True:
        c = None
        try:
            p, c = clients(bootstrap, src, group, txn_id)
            while True:
                msgs = [m for m in c.consume(num_messages=7, timeout=0.5) if not m.error()]
                if not msgs:
                    continue
                p.begin_transaction()
                for m in msgs:
                    p.produce(dst, m.value().replace(b"in-", b"out-"))
                p.send_offsets_to_transaction([TopicPartition(src, 0, msgs[-1].offset() + 1)],
                                              c.consumer_group_metadata(), 20)
                p.commit_transaction(20)
        except KafkaException as e:
            print("restarting after", e, file=sys.stderr, flush=True)
            time.sleep(0.2)
        finally:
            if c is not None:
                try:
                    c.close()
                except Exception:
                    pass


if __name__ == "__main__":
    main(*sys.argv[1:6])
