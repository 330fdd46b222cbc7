package sfu

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shoal-sfu/shoal/internal/testutil"
)

func TestEventQueueInOrderOneAtATime(t *testing.T) {
	testutil.CheckLeaks(t)
	q := newEventQueue()
	defer q.stop(true)
	var (
		mu      sync.Mutex
		got     []int
		running int
		overlap bool
	)
	done := make(chan struct{})
	const n = 200
	for i := range n {
		q.push(func() {
			mu.Lock()
			running++
			overlap = overlap || running > 1
			mu.Unlock()
			if i%50 == 0 {
				time.Sleep(time.Millisecond) // let pushes pile up behind a slow one
			}
			mu.Lock()
			running--
			got = append(got, i)
			mu.Unlock()
			if i == n-1 {
				close(done)
			}
		})
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("queued functions did not all run")
	}
	mu.Lock()
	defer mu.Unlock()
	if overlap {
		t.Fatal("two queued functions ran at once")
	}
	want := make([]int, n)
	for i := range want {
		want[i] = i
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ran out of order: %v", got)
	}
}

func TestEventQueueStopDropsQueued(t *testing.T) {
	testutil.CheckLeaks(t)
	q := newEventQueue()
	release := make(chan struct{})
	started := make(chan struct{})
	ran := make(chan int, 10)
	q.push(func() { close(started); <-release; ran <- 0 })
	<-started
	for i := 1; i <= 5; i++ {
		q.push(func() { ran <- i })
	}
	stopped := make(chan struct{})
	go func() { q.stop(true); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("stop(true) returned while a function was running")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	<-stopped
	q.push(func() { ran <- 99 })
	close(ran)
	var got []int
	for i := range ran {
		got = append(got, i)
	}
	if !slices.Equal(got, []int{0}) {
		t.Fatalf("ran %v after stop; want only the function that was running", got)
	}
	q.stop(true) // twice is fine
}

func TestEventQueueStopFromInside(t *testing.T) {
	testutil.CheckLeaks(t)
	q := newEventQueue()
	returned := make(chan struct{})
	ran := make(chan struct{}, 1)
	q.push(func() { q.stop(false); close(returned) })
	q.push(func() { ran <- struct{}{} })
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("stop(false) from a queued function did not return")
	}
	q.stop(true)
	select {
	case <-ran:
		t.Fatal("a function queued behind stop ran")
	default:
	}
}
