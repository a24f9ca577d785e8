package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRunOrder: every chunk's output reaches the consumer in order, whatever
// the number of workers and however small the budget; Prepare and Finish
// run once per job, in order.
func TestRunOrder(t *testing.T) {
	for _, workers := range []int{1, 2, 7} {
		for _, budget := range []int64{1, 100, 1 << 20} {
			var mu sync.Mutex
			var log []string
			note := func(s string) { mu.Lock(); log = append(log, s); mu.Unlock() }
			var jobs []*Job
			for i := range 20 {
				j := &Job{Name: fmt.Sprint("t", i), Chunks: i % 4}
				j.Size = func(c int) int { return 10 + 7*c + i }
				j.Prepare = func() error { note("prepare " + j.Name); return nil }
				j.Run = func(c int, out []byte, w *Worker) error {
					for k := range out {
						out[k] = byte(i*31 + c*7 + k)
					}
					return nil
				}
				j.Finish = func() error { note("finish " + j.Name); return nil }
				jobs = append(jobs, j)
			}
			var got []byte
			var want []byte
			for i, j := range jobs {
				for c := range j.Chunks {
					for k := range j.Size(c) {
						want = append(want, byte(i*31+c*7+k))
					}
				}
			}
			prepared := 0
			err := Run(context.Background(), Options{Workers: workers, Budget: budget}, jobs, func(j *Job, c int, out []byte) error {
				got = append(got, out...)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("workers %d, budget %d: output differs", workers, budget)
			}
			var finishes []string
			for _, l := range log {
				if l[:7] == "prepare" {
					prepared++
				} else {
					finishes = append(finishes, l)
				}
			}
			if prepared != 20 || len(finishes) != 20 || finishes[0] != "finish t0" || finishes[19] != "finish t19" {
				t.Fatalf("log %v", log)
			}
		}
	}
}

// TestRunBudget: the bytes held (outputs in flight and buffers kept) never
// exceed the budget, with workers far faster than the consumer.
func TestRunBudget(t *testing.T) {
	const budget = 1000
	// Outputs computed but not yet consumed stay within the budget.
	var inFlight, peak atomic.Int64
	var jobs []*Job
	for i := range 50 {
		jobs = append(jobs, &Job{Name: fmt.Sprint(i), Chunks: 3, Size: func(c int) int { return 50 + 50*c + i },
			Run: func(_ int, out []byte, _ *Worker) error {
				n := inFlight.Add(int64(cap(out)))
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				return nil
			}})
	}
	err := Run(context.Background(), Options{Workers: 4, Budget: budget}, jobs, func(_ *Job, _ int, out []byte) error {
		time.Sleep(10 * time.Microsecond) // a slow writer
		inFlight.Add(-int64(cap(out)))
		return nil
	})
	if err != nil || peak.Load() > budget {
		t.Fatalf("err %v; %d bytes in flight with a budget of %d", err, peak.Load(), budget)
	}
	peak.Store(0)
	// The pool itself enforces the limit; check it directly under churn.
	b := newBuffers(budget)
	held := func() int64 { b.mu.Lock(); defer b.mu.Unlock(); return b.held }
	rng := rand.New(rand.NewPCG(1, 2))
	var live [][]byte
	for range 2000 {
		if len(live) > 0 && (rng.IntN(2) == 0 || held() > budget-300) {
			i := rng.IntN(len(live))
			b.put(live[i])
			live = append(live[:i], live[i+1:]...)
			continue
		}
		buf, ok := b.get(1 + rng.IntN(299))
		if !ok {
			t.Fatal("closed")
		}
		live = append(live, buf)
		peak.Store(max(peak.Load(), held()))
	}
	if peak.Load() > budget {
		t.Fatalf("held %d bytes with a budget of %d", peak.Load(), budget)
	}
	b.free()
}

// TestRunErrors: the first failure in job order is returned, and the
// workers have stopped when Run returns.
func TestRunErrors(t *testing.T) {
	boom := errors.New("boom")
	var running atomic.Int64
	var jobs []*Job
	for i := range 30 {
		j := &Job{Name: fmt.Sprint(i), Chunks: 5, Size: func(int) int { return 64 }}
		j.Run = func(c int, out []byte, w *Worker) error {
			running.Add(1)
			defer running.Add(-1)
			if i == 12 && c == 3 {
				return fmt.Errorf("job %d: %w", i, boom)
			}
			return nil
		}
		jobs = append(jobs, j)
	}
	consumed := 0
	err := Run(context.Background(), Options{Workers: 3}, jobs, func(j *Job, c int, out []byte) error {
		consumed++
		return nil
	})
	if !errors.Is(err, boom) || err.Error() != "job 12: boom" || consumed != 12*5+3 {
		t.Fatalf("err %v after %d chunks", err, consumed)
	}
	if running.Load() != 0 {
		t.Fatal("a worker still runs after Run returned")
	}
	// A failing Prepare and a failing consumer stop the run the same way.
	jobs[4].Prepare = func() error { return boom }
	if err := Run(context.Background(), Options{}, jobs, func(*Job, int, []byte) error { return nil }); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	jobs[4].Prepare = nil
	if err := Run(context.Background(), Options{}, jobs, func(j *Job, c int, _ []byte) error {
		if j.Name == "2" {
			return boom
		}
		return nil
	}); !errors.Is(err, boom) {
		t.Fatal(err)
	}
}

// TestRunCancel: a cancelled context stops a run blocked on its consumer.
func TestRunCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var jobs []*Job
	for i := range 100 {
		jobs = append(jobs, &Job{Name: fmt.Sprint(i), Chunks: 2, Size: func(int) int { return 1 << 16 },
			Run: func(int, []byte, *Worker) error { return nil }})
	}
	n := 0
	err := Run(ctx, Options{Workers: 2, Budget: 1 << 17}, jobs, func(*Job, int, []byte) error {
		if n++; n == 10 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
}

// TestWorkerLocal: each worker has its own scratch.
func TestWorkerLocal(t *testing.T) {
	var made atomic.Int64
	jobs := []*Job{{Name: "x", Chunks: 100, Run: func(c int, _ []byte, w *Worker) error {
		p := w.Local.(*int)
		*p++
		w.Buf(c + 1)[c] = 1
		return nil
	}}}
	err := Run(context.Background(), Options{Workers: 3, Local: func() any { made.Add(1); return new(int) }}, jobs,
		func(*Job, int, []byte) error { return nil })
	if err != nil || made.Load() != 3 {
		t.Fatalf("err %v, %d scratch values for 3 workers", err, made.Load())
	}
}
