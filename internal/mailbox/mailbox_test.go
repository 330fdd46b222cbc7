package mailbox

import (
	"slices"
	"testing"
)

func TestBoxOrderAndCoalescing(t *testing.T) {
	b := New[int](0)
	for i := range 5 {
		if !b.Put(i) {
			t.Fatalf("Put(%d) refused by an unbounded box", i)
		}
	}
	<-b.Wake()
	select {
	case <-b.Wake():
		t.Fatal("five Puts woke the consumer twice")
	default:
	}
	got, overflow := b.Take()
	if !slices.Equal(got, []int{0, 1, 2, 3, 4}) || overflow {
		t.Fatalf("Take = %v, %v; want [0 1 2 3 4], false", got, overflow)
	}
	if got, _ := b.Take(); len(got) != 0 {
		t.Fatalf("second Take = %v, want empty", got)
	}
}

func TestBoxLimit(t *testing.T) {
	b := New[string](2)
	b.Put("a")
	b.Put("b")
	if b.Put("c") {
		t.Fatal("Put beyond the limit accepted")
	}
	got, overflow := b.Take()
	if !slices.Equal(got, []string{"a", "b"}) || !overflow {
		t.Fatalf("Take = %v, %v; want [a b], true", got, overflow)
	}
	if !b.Put("d") {
		t.Fatal("Put refused after Take made room")
	}
	if _, overflow := b.Take(); overflow {
		t.Fatal("overflow reported twice")
	}
}

func TestBoxClose(t *testing.T) {
	b := New[int](0)
	b.Put(1)
	b.Close()
	b.Close()
	if !b.Closed() {
		t.Fatal("Closed() = false after Close")
	}
	if b.Put(2) {
		t.Fatal("Put accepted after Close")
	}
	if got, _ := b.Take(); len(got) != 0 {
		t.Fatalf("Take after Close = %v, want empty", got)
	}
}

func BenchmarkPutTake(b *testing.B) {
	box := New[int](0)
	b.ReportAllocs()
	for i := range b.N {
		box.Put(i)
		if i%64 == 63 {
			<-box.Wake()
			box.Take()
		}
	}
}
