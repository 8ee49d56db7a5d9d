// A franz-go transactional producer driven by
// tests/integration/test_transactions_protocol.py: three transactions on a
// topic of two partitions (commit, abort, commit), logging at debug level,
// where franz-go names every request it writes with its version
// ("wrote EndTxn v1"), to see which transaction protocol it chose.
//
//	txnwrite <bootstrap> <topic>
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func main() {
	bootstrap, topic := os.Args[1], os.Args[2]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin, err := kgo.NewClient(kgo.SeedBrokers(bootstrap))
	must(err)
	_, err = kadm.NewClient(admin).CreateTopic(ctx, 2, 1, nil, topic)
	must(err)
	admin.Close()
	p, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.TransactionalID("franz-txn-protocol"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.WithLogger(kgo.BasicLogger(os.Stdout, kgo.LogLevelDebug, nil)))
	must(err)
	defer p.Close()
	for i := 0; i < 3; i++ {
		must(p.BeginTransaction())
		r := &kgo.Record{Topic: topic, Partition: int32(i % 2), Value: []byte(fmt.Sprintf("v%d", i))}
		must(p.ProduceSync(ctx, r).FirstErr())
		must(p.EndTransaction(ctx, kgo.TransactionEndTry(i != 1)))
		fmt.Println("done", i)
	}
}
