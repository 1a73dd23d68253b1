// lockbench: N contenders take one lock over and over for a fixed time,
// through the v3lockpb.Lock RPC (-mode rpc) or clientv3's Mutex recipe
// (-mode recipe), each with its own connection and lease; the critical
// section is empty. Prints one JSON line: acquisitions, acquisitions per
// second, and hand-over latency (from the holder sending Unlock to the next
// holder receiving its grant) p50/p99/max in milliseconds.
//
// Built by tests/bench/lock_bench.py with GOPATH=/usr/share/gocode
// GO111MODULE=off against Debian's clientv3.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
	"go.etcd.io/etcd/etcdserver/api/v3lock/v3lockpb"
)

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "comma-separated")
	n := flag.Int("contenders", 10, "contenders")
	dur := flag.Duration("duration", 10*time.Second, "run time")
	mode := flag.String("mode", "rpc", "rpc or recipe")
	name := flag.String("name", "bench-lock", "lock name")
	flag.Parse()

	var mu sync.Mutex
	var lastUnlock time.Time // when the last holder sent Unlock
	var handovers []float64
	total := 0
	stop := time.Now().Add(*dur)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < *n; i++ {
		c, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: 5 * time.Second})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer c.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			var lock func() (func(), error)
			if *mode == "rpc" {
				l, err := c.Grant(ctx, 60)
				if err != nil {
					panic(err)
				}
				lk := v3lockpb.NewLockClient(c.ActiveConnection())
				lock = func() (func(), error) {
					r, err := lk.Lock(ctx, &v3lockpb.LockRequest{Name: []byte(*name), Lease: int64(l.ID)})
					if err != nil {
						return nil, err
					}
					return func() { lk.Unlock(ctx, &v3lockpb.UnlockRequest{Key: r.Key}) }, nil
				}
			} else {
				s, err := concurrency.NewSession(c, concurrency.WithTTL(60))
				if err != nil {
					panic(err)
				}
				defer s.Close()
				m := concurrency.NewMutex(s, *name)
				lock = func() (func(), error) {
					if err := m.Lock(ctx); err != nil {
						return nil, err
					}
					return func() { m.Unlock(ctx) }, nil
				}
			}
			<-start
			for time.Now().Before(stop) {
				unlock, err := lock()
				if err != nil {
					fmt.Fprintln(os.Stderr, "lock:", err)
					return
				}
				now := time.Now()
				mu.Lock()
				if !lastUnlock.IsZero() {
					handovers = append(handovers, float64(now.Sub(lastUnlock).Microseconds())/1000)
				}
				total++
				lastUnlock = time.Now()
				mu.Unlock()
				unlock()
			}
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(t0).Seconds()
	sort.Float64s(handovers)
	q := func(p float64) float64 {
		if len(handovers) == 0 {
			return 0
		}
		return handovers[int(p*float64(len(handovers)-1))]
	}
	out := map[string]interface{}{
		"mode": *mode, "contenders": *n, "acquisitions": total, "seconds": elapsed,
		"per_sec": float64(total) / elapsed, "handover_p50_ms": q(0.5), "handover_p99_ms": q(0.99),
		"handover_max_ms": q(1),
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}
