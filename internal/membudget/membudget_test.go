package membudget

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestBudgetBoundsBytesInFlight(t *testing.T) {
	b := New(100)
	var inFlight, peak atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(n int64) {
			defer wg.Done()
			if !b.Acquire(n) {
				t.Error("Acquire failed on an open budget")
				return
			}
			cur := inFlight.Add(n)
			for p := peak.Load(); cur > p && !peak.CompareAndSwap(p, cur); p = peak.Load() {
			}
			time.Sleep(time.Millisecond)
			inFlight.Add(-n)
			b.Release(n)
		}(int64(10 + i%5*10))
	}
	wg.Wait()
	if peak.Load() > 100 {
		t.Fatalf("%d bytes in flight, limit 100", peak.Load())
	}
	// A request above the limit is granted alone.
	if !b.Acquire(1000) {
		t.Fatal("oversized request refused")
	}
	b.Release(1000)
}

func TestCloseWakesWaiters(t *testing.T) {
	b := New(10)
	b.Acquire(10)
	got := make(chan bool)
	go func() { got <- b.Acquire(5) }()
	time.Sleep(10 * time.Millisecond)
	b.Close()
	if <-got {
		t.Fatal("Acquire succeeded after Close")
	}
	if b.Acquire(1) {
		t.Fatal("Acquire succeeded on a closed budget")
	}
}
