package main

import (
	"math/bits"
	"time"
)

// hist is a latency histogram with 64 buckets per power of two (about
// 1.6% resolution) from 1 ns to about 18 minutes. It is not safe for
// concurrent use: each worker has its own, merged at the end.
type hist struct {
	n     [64 * 42]uint64
	count uint64
	max   time.Duration
}

func bucket(d time.Duration) int {
	v := uint64(max(d, 0))
	if v < 128 {
		return int(v)
	}
	e := bits.Len64(v) - 7 // v>>e is in [64, 128)
	return min(64*e+int(v>>e), 64*42-1)
}

// lower returns the smallest duration in bucket i.
func lower(i int) time.Duration {
	if i < 128 {
		return time.Duration(i)
	}
	e := i/64 - 1
	return time.Duration(uint64(i-64*e) << e)
}

func (h *hist) add(d time.Duration) {
	h.n[bucket(d)]++
	h.count++
	h.max = max(h.max, d)
}

func (h *hist) merge(o *hist) {
	for i, c := range o.n {
		h.n[i] += c
	}
	h.count += o.count
	h.max = max(h.max, o.max)
}

// quantile returns the lower bound of the bucket holding quantile q.
func (h *hist) quantile(q float64) time.Duration {
	if h.count == 0 {
		return 0
	}
	rank := uint64(q * float64(h.count))
	if rank >= h.count {
		rank = h.count - 1
	}
	var seen uint64
	for i, c := range h.n {
		seen += c
		if seen > rank {
			return lower(i)
		}
	}
	return h.max
}
