package engine

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func hubEv(key string, version, seq int64) *hubEvent {
	return &hubEvent{info: eventInfo{key: key, scope: "s", version: version, seq: seq}}
}

// describe renders items as "key@version" with a "*" for coalesced ones.
func describe(items []feedItem) string {
	parts := make([]string, len(items))
	for i, it := range items {
		parts[i] = fmt.Sprintf("%s@%d", it.e.info.key, it.e.info.version)
		if it.coalesced {
			parts[i] += "*"
		}
	}
	return strings.Join(parts, " ")
}

func takeAll(f *feed) (string, bool) {
	items, overflow := f.take(nil)
	return describe(items), overflow
}

func TestFeedBelowLimitKeepsOrder(t *testing.T) {
	t.Parallel()
	f := newFeed(4)
	f.offer(hubEv("a", 1, 1), nil)
	f.offer(hubEv("b", 1, 2), nil)
	f.offer(hubEv("a", 2, 3), nil)
	f.offer(hubEv("c", 1, 4), nil)
	items, overflow := takeAll(f)
	if items != "a@1 b@1 a@2 c@1" || overflow {
		t.Fatalf("take = %q overflow=%v; want every item in order, no flag", items, overflow)
	}
	if f.coalesces != 0 {
		t.Fatalf("coalesced %d times below the limit", f.coalesces)
	}
}

func TestFeedCoalescesAtLimit(t *testing.T) {
	t.Parallel()
	f := newFeed(4)
	for i, k := range []string{"a", "b", "a", "c"} {
		f.offer(hubEv(k, int64(i+1), int64(i+1)), nil)
	}
	f.offer(hubEv("b", 5, 5), nil) // full: keep the latest a, b and c, then add b@5
	items, overflow := takeAll(f)
	// Latest versions in the order they were queued, marked coalesced; the
	// new item follows unmarked.
	if want := "b@2* a@3* c@4* b@5"; items != want || overflow {
		t.Fatalf("take = %q overflow=%v; want %q", items, overflow, want)
	}
	if f.coalesces != 1 {
		t.Fatalf("coalesces = %d, want 1", f.coalesces)
	}
}

func TestFeedCoalescesRepeatedly(t *testing.T) {
	t.Parallel()
	f := newFeed(3)
	seq := int64(0)
	for v := int64(1); v <= 20; v++ {
		for _, k := range []string{"a", "b"} {
			seq++
			f.offer(hubEv(k, v, seq), nil)
		}
	}
	items, overflow := f.take(nil)
	if overflow {
		t.Fatal("two keys overflowed a buffer of three")
	}
	latest := map[string]int64{}
	for i, it := range items {
		if i > 0 && it.e.info.seq <= items[i-1].e.info.seq {
			t.Fatalf("items out of seq order: %s", describe(items))
		}
		latest[it.e.info.key] = it.e.info.version
	}
	if latest["a"] != 20 || latest["b"] != 20 {
		t.Fatalf("take = %s, want the final versions of a and b", describe(items))
	}
	if len(items) > 3 {
		t.Fatalf("feed holds %d items, limit 3", len(items))
	}
}

func TestFeedOverflow(t *testing.T) {
	t.Parallel()
	f := newFeed(3)
	for i, k := range []string{"a", "b", "c", "d"} { // four distinct keys never fit in three
		f.offer(hubEv(k, 1, int64(i+1)), nil)
	}
	f.offer(hubEv("e", 1, 5), nil) // dropped too: the re-read covers it
	select {
	case <-f.wake:
	default:
		t.Fatal("overflow did not wake the stream")
	}
	items, overflow := takeAll(f)
	if items != "" || !overflow {
		t.Fatalf("take = %q overflow=%v; want nothing queued and overflow set", items, overflow)
	}
	// take resets the flag; the buffer works again.
	f.offer(hubEv("f", 1, 6), nil)
	items, overflow = takeAll(f)
	if items != "f@1" || overflow {
		t.Fatalf("after take: %q overflow=%v", items, overflow)
	}
}

// TestFeedMarkOverflow: the Hub's request to re-read drops what is queued
// (the re-read covers it), wakes the stream, and is reported once.
func TestFeedMarkOverflow(t *testing.T) {
	t.Parallel()
	f := newFeed(8)
	f.offer(hubEv("a", 1, 1), nil)
	select {
	case <-f.wake:
	default:
		t.Fatal("offer did not wake the stream")
	}
	f.markOverflow()
	select {
	case <-f.wake:
	case <-time.After(wait):
		t.Fatal("markOverflow did not wake the stream")
	}
	items, overflow := takeAll(f)
	if items != "" || !overflow {
		t.Fatalf("take = %q overflow=%v; want nothing queued and overflow", items, overflow)
	}
	f.offer(hubEv("a", 2, 2), nil)
	items, overflow = takeAll(f)
	if items != "a@2" || overflow {
		t.Fatalf("second take = %q overflow=%v; want the new item, flag reset", items, overflow)
	}
}

func TestFeedTakeReusesBuffer(t *testing.T) {
	t.Parallel()
	f := newFeed(8)
	f.offer(hubEv("a", 1, 1), nil)
	buf, _ := f.take(nil)
	f.offer(hubEv("b", 1, 2), nil)
	got, _ := f.take(buf)
	if describe(got) != "b@1" {
		t.Fatalf("take(buf) = %s, want only the new item", describe(got))
	}
}

func TestFeedConcurrentOffers(t *testing.T) {
	t.Parallel()
	f := newFeed(16)
	const writers, each = 4, 500
	done := make(chan struct{})
	for w := range writers {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range each {
				f.offer(hubEv(fmt.Sprintf("k%d", w), int64(i+1), int64(w*each+i+1)), nil)
			}
		}()
	}
	latest := map[string]int64{}
	finished := 0
	timeout := time.After(wait)
	for finished < writers {
		select {
		case <-done:
			finished++
		case <-f.wake:
			items, overflow := f.take(nil)
			if overflow {
				t.Fatal("four keys overflowed a buffer of sixteen")
			}
			for _, it := range items {
				if it.e.info.version <= latest[it.e.info.key] {
					t.Fatalf("%s went back from version %d to %d", it.e.info.key, latest[it.e.info.key], it.e.info.version)
				}
				latest[it.e.info.key] = it.e.info.version
			}
		case <-timeout:
			t.Fatal("writers did not finish")
		}
	}
	items, _ := f.take(nil)
	for _, it := range items {
		latest[it.e.info.key] = it.e.info.version
	}
	for w := range writers {
		if v := latest[fmt.Sprintf("k%d", w)]; v != each {
			t.Errorf("k%d ended at version %d, want %d", w, v, each)
		}
	}
}
