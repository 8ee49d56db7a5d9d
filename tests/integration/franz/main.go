// A franz-go client driven by tests/integration/test_franz_go.py: admin,
// keyed produce under every codec, and a group consumer reading it back.
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
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
	n, _ := strconv.Atoi(os.Args[3])
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	admin, err := kgo.NewClient(kgo.SeedBrokers(bootstrap))
	must(err)
	adm := kadm.NewClient(admin)
	resp, err := adm.CreateTopics(ctx, 3, 1, nil, topic)
	must(err)
	for _, r := range resp {
		must(r.Err)
		fmt.Println("created", r.Topic, r.ID)
	}
	admin.Close()

	codecs := []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()}
	sent := 0
	base := time.Now().Add(-time.Minute)
	for _, codec := range codecs {
		p, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.ProducerBatchCompression(codec), kgo.RequiredAcks(kgo.AllISRAcks()))
		must(err)
		for i := 0; i < n; i++ {
			r := &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("key-%d", sent%7)), Value: []byte(fmt.Sprintf("v-%d", sent)),
				Timestamp: base.Add(time.Duration(sent) * time.Millisecond),
				Headers:   []kgo.RecordHeader{{Key: "h", Value: []byte(fmt.Sprintf("h%d", sent))}}}
			res := p.ProduceSync(ctx, r)
			must(res.FirstErr())
			fmt.Println("acked", r.Partition, r.Offset)
			sent++
		}
		p.Close()
	}

	c, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.ConsumerGroup("franz-group"), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	must(err)
	got := 0
	for got < sent {
		fetches := c.PollFetches(ctx)
		if ctx.Err() != nil {
			must(ctx.Err())
		}
		fetches.EachError(func(t string, p int32, err error) { must(err) })
		fetches.EachRecord(func(r *kgo.Record) {
			fmt.Println("record", r.Partition, r.Offset, r.Timestamp.UnixMilli(), string(r.Key), string(r.Value), string(r.Headers[0].Value))
			got++
		})
	}
	must(c.CommitUncommittedOffsets(ctx))
	// A moment more: the consumer's next fetch (an incremental one of its
	// session) reaches the broker even when the first answer held everything.
	short, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
	c.PollFetches(short)
	cancel()
	c.Close()
	lag, err := kadm.NewClient(func() *kgo.Client { cl, _ := kgo.NewClient(kgo.SeedBrokers(bootstrap)); return cl }()).Lag(ctx, "franz-group")
	must(err)
	for _, l := range lag {
		must(l.Error())
		fmt.Println("lag", l.Lag.Total())
	}
}
