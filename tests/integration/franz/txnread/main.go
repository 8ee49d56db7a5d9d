// A franz-go reader driven by tests/integration/test_franz_go.py: it assigns
// the given partitions of a topic from the start, reads them with the given
// isolation level (read_committed or read_uncommitted), prints one
// "record <partition> <offset> <value>" line per record, and exits once no
// record came for a short while.
//
//	txnread <bootstrap> <topic> <partitions> <read_committed|read_uncommitted>
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	bootstrap, topic := os.Args[1], os.Args[2]
	n, _ := strconv.Atoi(os.Args[3])
	isolation := kgo.ReadUncommitted()
	if os.Args[4] == "read_committed" {
		isolation = kgo.ReadCommitted()
	}
	parts := map[int32]kgo.Offset{}
	for p := 0; p < n; p++ {
		parts[int32(p)] = kgo.NewOffset().AtStart()
	}
	c, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.FetchIsolationLevel(isolation),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}))
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	defer c.Close()
	deadline := time.Now().Add(60 * time.Second)
	idle := 1500 * time.Millisecond
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), idle)
		fetches := c.PollFetches(ctx)
		cancel()
		fetches.EachError(func(t string, p int32, err error) {
			if err != context.DeadlineExceeded && err != context.Canceled {
				fmt.Fprintln(os.Stderr, "fetch error:", t, p, err)
			}
		})
		got := 0
		fetches.EachRecord(func(r *kgo.Record) {
			fmt.Println("record", r.Partition, r.Offset, string(r.Value))
			got++
		})
		if got == 0 && ctx.Err() != nil {
			return // idle for a while: everything readable was read
		}
	}
	fmt.Fprintln(os.Stderr, "error: still reading after 60 s")
	os.Exit(1)
}
