// lockclient drives a server with etcd's own Go clients, as Debian ships
// them (clientv3 3.4, its concurrency recipes, and the generated
// v3lockpb/v3electionpb stubs). Built by tests/interop/test_go_clients.py:
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build
//
// Usage: lockclient -endpoints host:port[,...] <scenario>. Prints "ok
// <scenario>" and exits 0, or prints what went wrong and exits 1.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
	"go.etcd.io/etcd/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/etcdserver/api/v3lock/v3lockpb"
)

var endpoints = flag.String("endpoints", "127.0.0.1:2379", "comma-separated endpoints")
var contenders = flag.Int("contenders", 4, "goroutines per scenario")
var rounds = flag.Int("rounds", 20, "acquisitions per contender")

func fail(format string, args ...interface{}) {
	fmt.Printf("FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func client() *clientv3.Client {
	c, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: 5 * time.Second})
	if err != nil {
		fail("connect: %v", err)
	}
	return c
}

func ctx(d time.Duration) context.Context {
	c, _ := context.WithTimeout(context.Background(), d)
	return c
}

// Lock RPC (v3lockpb stubs): mutual exclusion among goroutines, each with
// its own lease; every holder writes through a fence on its key.
func lockRPC(c *clientv3.Client) {
	lk := v3lockpb.NewLockClient(c.ActiveConnection())
	var inside int32
	var wg sync.WaitGroup
	var total int64
	for i := 0; i < *contenders; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			l, err := c.Grant(ctx(5*time.Second), 30)
			if err != nil {
				fail("grant: %v", err)
			}
			for r := 0; r < *rounds; r++ {
				resp, err := lk.Lock(ctx(30*time.Second), &v3lockpb.LockRequest{Name: []byte("go-lock"), Lease: int64(l.ID)})
				if err != nil {
					fail("lock: %v", err)
				}
				if n := atomic.AddInt32(&inside, 1); n != 1 {
					fail("%d holders at once", n)
				}
				key := string(resp.Key)
				g, err := c.Get(ctx(5*time.Second), key)
				if err != nil || len(g.Kvs) != 1 {
					fail("lock key %q missing: %v", key, err)
				}
				rev := g.Kvs[0].CreateRevision
				if resp.Header.Revision < rev {
					fail("header revision %d below the key's create revision %d", resp.Header.Revision, rev)
				}
				t, err := c.Txn(ctx(5*time.Second)).If(clientv3.Compare(clientv3.CreateRevision(key), "=", rev)).
					Then(clientv3.OpPut("go-lock-counter", fmt.Sprint(i, r))).Commit()
				if err != nil || !t.Succeeded {
					fail("fenced write refused for the holder: %v", err)
				}
				atomic.AddInt64(&total, 1)
				atomic.AddInt32(&inside, -1)
				if _, err := lk.Unlock(ctx(5*time.Second), &v3lockpb.UnlockRequest{Key: resp.Key}); err != nil {
					fail("unlock: %v", err)
				}
				// The fence now refuses the former holder.
				t, err = c.Txn(ctx(5*time.Second)).If(clientv3.Compare(clientv3.CreateRevision(key), "=", rev)).
					Then(clientv3.OpPut("go-lock-counter", "stale")).Commit()
				if err != nil || t.Succeeded {
					fail("fenced write accepted after unlock: %v", err)
				}
			}
		}(i)
	}
	wg.Wait()
	if total != int64(*contenders**rounds) {
		fail("%d acquisitions, want %d", total, *contenders**rounds)
	}
}

// clientv3's Mutex recipe (KV + watch + lease; what etcdctl lock uses).
func mutexRecipe(c *clientv3.Client) {
	var inside int32
	var wg sync.WaitGroup
	for i := 0; i < *contenders; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := concurrency.NewSession(c, concurrency.WithTTL(30))
			if err != nil {
				fail("session: %v", err)
			}
			defer s.Close()
			m := concurrency.NewMutex(s, "go-mutex")
			for r := 0; r < *rounds/2+1; r++ {
				if err := m.Lock(ctx(30 * time.Second)); err != nil {
					fail("mutex lock: %v", err)
				}
				if n := atomic.AddInt32(&inside, 1); n != 1 {
					fail("%d holders at once", n)
				}
				time.Sleep(time.Millisecond)
				atomic.AddInt32(&inside, -1)
				if err := m.Unlock(ctx(5 * time.Second)); err != nil {
					fail("mutex unlock: %v", err)
				}
			}
		}()
	}
	wg.Wait()
}

// A Mutex recipe holder and a Lock RPC caller on the same name exclude
// each other: both are keys under "<name>/".
func mixed(c *clientv3.Client) {
	s, err := concurrency.NewSession(c, concurrency.WithTTL(30))
	if err != nil {
		fail("session: %v", err)
	}
	defer s.Close()
	m := concurrency.NewMutex(s, "go-mixed")
	if err := m.Lock(ctx(5 * time.Second)); err != nil {
		fail("mutex lock: %v", err)
	}
	l, _ := c.Grant(ctx(5*time.Second), 30)
	lk := v3lockpb.NewLockClient(c.ActiveConnection())
	done := make(chan *v3lockpb.LockResponse, 1)
	go func() {
		r, err := lk.Lock(ctx(30*time.Second), &v3lockpb.LockRequest{Name: []byte("go-mixed"), Lease: int64(l.ID)})
		if err != nil {
			fail("lock: %v", err)
		}
		done <- r
	}()
	select {
	case <-done:
		fail("Lock RPC granted while the recipe holds the mutex")
	case <-time.After(300 * time.Millisecond):
	}
	if err := m.Unlock(ctx(5 * time.Second)); err != nil {
		fail("unlock: %v", err)
	}
	select {
	case r := <-done:
		lk.Unlock(ctx(5*time.Second), &v3lockpb.UnlockRequest{Key: r.Key})
	case <-time.After(5 * time.Second):
		fail("Lock RPC not granted after the recipe's unlock")
	}
}

// Election RPC (v3electionpb stubs): campaign order, proclaim, leader,
// observe (every change, in order), resign.
func electionRPC(c *clientv3.Client) {
	ec := v3electionpb.NewElectionClient(c.ActiveConnection())
	name := []byte("go-elect")
	if _, err := ec.Leader(ctx(5*time.Second), &v3electionpb.LeaderRequest{Name: name}); err == nil ||
		!strings.Contains(err.Error(), "election: no leader") {
		fail("leader before any campaign: %v", err)
	}
	octx, ocancel := context.WithCancel(context.Background())
	defer ocancel()
	obs, err := ec.Observe(octx, &v3electionpb.LeaderRequest{Name: name})
	if err != nil {
		fail("observe: %v", err)
	}
	seen := make(chan string, 100)
	go func() {
		for {
			r, err := obs.Recv()
			if err != nil {
				close(seen)
				return
			}
			// Synod says "no leader" with an empty kv; etcd never does.
			seen <- string(r.Kv.Value)
		}
	}()
	l0, _ := c.Grant(ctx(5*time.Second), 30)
	r0, err := ec.Campaign(ctx(5*time.Second), &v3electionpb.CampaignRequest{Name: name, Lease: int64(l0.ID), Value: []byte("c0")})
	if err != nil {
		fail("campaign: %v", err)
	}
	leaders := []*v3electionpb.LeaderKey{r0.Leader, nil, nil}
	var chs []chan *v3electionpb.LeaderKey
	for i := 1; i < 3; i++ {
		l, _ := c.Grant(ctx(5*time.Second), 30)
		ch := make(chan *v3electionpb.LeaderKey, 1)
		chs = append(chs, ch)
		go func(i int, lease int64) {
			r, err := ec.Campaign(ctx(30*time.Second), &v3electionpb.CampaignRequest{Name: name, Lease: lease, Value: []byte(fmt.Sprintf("c%d", i))})
			if err != nil {
				fail("campaign %d: %v", i, err)
			}
			ch <- r.Leader
		}(i, int64(l.ID))
		time.Sleep(200 * time.Millisecond) // campaign order: c1 before c2
	}
	elected := func(i int) {
		select {
		case leaders[i] = <-chs[i-1]:
		case <-time.After(5 * time.Second):
			fail("candidate %d not elected", i)
		}
	}
	if _, err := ec.Proclaim(ctx(5*time.Second), &v3electionpb.ProclaimRequest{Leader: leaders[0], Value: []byte("c0b")}); err != nil {
		fail("proclaim: %v", err)
	}
	lr, err := ec.Leader(ctx(5*time.Second), &v3electionpb.LeaderRequest{Name: name})
	if err != nil || string(lr.Kv.Value) != "c0b" {
		fail("leader: %v %v", lr, err)
	}
	if _, err := ec.Resign(ctx(5*time.Second), &v3electionpb.ResignRequest{Leader: leaders[0]}); err != nil {
		fail("resign: %v", err)
	}
	if _, err := ec.Proclaim(ctx(5*time.Second), &v3electionpb.ProclaimRequest{Leader: leaders[0], Value: []byte("late")}); err == nil ||
		!strings.Contains(err.Error(), "election: not leader") {
		fail("proclaim after resign: %v", err)
	}
	elected(1)
	select {
	case <-chs[1]:
		fail("third candidate elected while the second leads")
	default:
	}
	ec.Resign(ctx(5*time.Second), &v3electionpb.ResignRequest{Leader: leaders[1]})
	elected(2)
	ec.Resign(ctx(5*time.Second), &v3electionpb.ResignRequest{Leader: leaders[2]})
	time.Sleep(300 * time.Millisecond)
	ocancel()
	var got []string
	for v := range seen {
		got = append(got, v)
	}
	// Synod: "" (none), c0, c0b, c1, c2, "" (none); etcd drops what it
	// likes and never says none: check the order of what was said.
	want := []string{"c0", "c0b", "c1", "c2"}
	j := 0
	for _, v := range got {
		if j < len(want) && v == want[j] {
			j++
		}
	}
	if j != len(want) {
		fail("observed %q, want %q in order", got, want)
	}
	fmt.Printf("observed %q\n", got)
}

// clientv3's Election recipe (what etcdctl elect uses).
func electionRecipe(c *clientv3.Client) {
	s1, _ := concurrency.NewSession(c, concurrency.WithTTL(30))
	s2, _ := concurrency.NewSession(c, concurrency.WithTTL(30))
	defer s1.Close()
	defer s2.Close()
	e1 := concurrency.NewElection(s1, "go-recipe")
	e2 := concurrency.NewElection(s2, "go-recipe")
	if err := e1.Campaign(ctx(5*time.Second), "one"); err != nil {
		fail("campaign: %v", err)
	}
	won := make(chan error, 1)
	go func() { won <- e2.Campaign(ctx(30*time.Second), "two") }()
	select {
	case <-won:
		fail("second candidate elected while the first leads")
	case <-time.After(300 * time.Millisecond):
	}
	obs := concurrency.NewElection(s2, "go-recipe").Observe(ctx(10 * time.Second))
	if r := <-obs; string(r.Kvs[0].Value) != "one" {
		fail("observe: %q", r.Kvs[0].Value)
	}
	if err := e1.Proclaim(ctx(5*time.Second), "uno"); err != nil {
		fail("proclaim: %v", err)
	}
	if r := <-obs; string(r.Kvs[0].Value) != "uno" {
		fail("observe proclamation: %q", r.Kvs[0].Value)
	}
	if err := e1.Resign(ctx(5 * time.Second)); err != nil {
		fail("resign: %v", err)
	}
	if err := <-won; err != nil {
		fail("second campaign: %v", err)
	}
	if r := <-obs; string(r.Kvs[0].Value) != "two" {
		fail("observe new leader: %q", r.Kvs[0].Value)
	}
}

// A Lock waiter whose lease is revoked while it waits gets an error and
// never the lock (etcd 3.4 keeps waiting, then grants it).
func revokedWaiter(c *clientv3.Client) {
	lk := v3lockpb.NewLockClient(c.ActiveConnection())
	l1, _ := c.Grant(ctx(5*time.Second), 30)
	l2, _ := c.Grant(ctx(5*time.Second), 30)
	h, err := lk.Lock(ctx(5*time.Second), &v3lockpb.LockRequest{Name: []byte("go-rev"), Lease: int64(l1.ID)})
	if err != nil {
		fail("lock: %v", err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := lk.Lock(ctx(10*time.Second), &v3lockpb.LockRequest{Name: []byte("go-rev"), Lease: int64(l2.ID)})
		errc <- err
	}()
	time.Sleep(300 * time.Millisecond)
	c.Revoke(ctx(5*time.Second), l2.ID)
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "session is expired") {
			fail("revoked waiter: %v", err)
		}
	case <-time.After(5 * time.Second):
		fail("revoked waiter still waiting")
	}
	lk.Unlock(ctx(5*time.Second), &v3lockpb.UnlockRequest{Key: h.Key})
}

func main() {
	flag.Parse()
	if flag.NArg() != 1 {
		fail("usage: lockclient [flags] lock-rpc|mutex|mixed|election-rpc|election-recipe|revoked-waiter")
	}
	c := client()
	defer c.Close()
	switch flag.Arg(0) {
	case "lock-rpc":
		lockRPC(c)
	case "mutex":
		mutexRecipe(c)
	case "mixed":
		mixed(c)
	case "election-rpc":
		electionRPC(c)
	case "election-recipe":
		electionRecipe(c)
	case "revoked-waiter":
		revokedWaiter(c)
	default:
		fail("unknown scenario %q", flag.Arg(0))
	}
	fmt.Println("ok", flag.Arg(0))
}
