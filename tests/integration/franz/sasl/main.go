// A franz-go client driven by tests/integration/test_security_franz.py: it
// logs in with the given SASL mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512,
// or OAUTHBEARER with an unsecured JWS made here for the user), over TLS
// when a CA file is given (the host name checked), produces n records and
// reads them back in a group; one line per step. The mechanism NONE logs in
// with no SASL, over TLS with the client certificate and key files given as
// user and password (an SSL listener asking for one).
//
//	sasl <bootstrap> <mechanism> <user> <password> <ca file or -> <topic> <n>
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func mechanism(name, user, pass string) sasl.Mechanism {
	switch name {
	case "PLAIN":
		return plain.Auth{User: user, Pass: pass}.AsMechanism()
	case "SCRAM-SHA-256":
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()
	case "SCRAM-SHA-512":
		return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()
	case "OAUTHBEARER":
		enc := base64.RawURLEncoding.EncodeToString
		now := time.Now().Unix()
		claims := fmt.Sprintf(`{"sub":%q,"iat":%d,"exp":%d,"scope":["kafka"]}`, user, now-1, now+600)
		return oauth.Auth{Token: enc([]byte(`{"alg":"none"}`)) + "." + enc([]byte(claims)) + "."}.AsMechanism()
	}
	fmt.Fprintln(os.Stderr, "unknown mechanism", name)
	os.Exit(2)
	return nil
}

func main() {
	bootstrap, mech, user, pass, ca, topic := os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5], os.Args[6]
	n, _ := strconv.Atoi(os.Args[7])
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts := []kgo.Opt{kgo.SeedBrokers(bootstrap)}
	if mech != "NONE" {
		opts = append(opts, kgo.SASL(mechanism(mech, user, pass)))
	}
	if ca != "-" {
		pem, err := os.ReadFile(ca)
		must(err)
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		config := &tls.Config{RootCAs: pool}
		if mech == "NONE" {
			cert, err := tls.LoadX509KeyPair(user, pass)
			must(err)
			config.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, kgo.DialTLSConfig(config))
	}
	p, err := kgo.NewClient(append(opts, kgo.AllowAutoTopicCreation())...)
	must(err)
	for i := 0; i < n; i++ {
		must(p.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(fmt.Sprintf("v-%d", i))}).FirstErr())
	}
	p.Close()
	fmt.Println("produced", n)
	c, err := kgo.NewClient(append(opts, kgo.ConsumerGroup(topic+"-group"), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	must(err)
	got := 0
	for got < n {
		fs := c.PollFetches(ctx)
		if errs := fs.Errors(); len(errs) > 0 {
			must(errs[0].Err)
		}
		got += fs.NumRecords()
	}
	c.Close()
	fmt.Println("consumed", got)
}
