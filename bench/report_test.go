package main

import (
	"math"
	"testing"
)

func TestPairedRatios(t *testing.T) {
	run := func(wall, cpu float64, err string) sample {
		return sample{usage: usage{Wall: wall, CPU: cpu}, Err: err}
	}
	on := []sample{run(2.2, 1.1, ""), run(4.0, 1.0, ""), run(3.0, 1.5, "boom"), run(1.0, 0.5, "")}
	off := []sample{run(2.0, 1.0, ""), run(4.0, 1.0, ""), run(3.0, 1.0, ""), run(1.0, 0.5, ""), run(9, 9, "")}
	wall, cpu := pairedRatios(on, off)
	want := []float64{1.1, 1.0, 1.0}
	if len(wall) != len(want) || len(cpu) != len(want) {
		t.Fatalf("pairedRatios kept %d wall and %d CPU pairs, want %d each (a failed run drops its pair; unpaired runs are ignored)", len(wall), len(cpu), len(want))
	}
	for i := range want {
		if math.Abs(wall[i]-want[i]) > 1e-9 || math.Abs(cpu[i]-want[i]) > 1e-9 {
			t.Errorf("pair %d: wall %.3f CPU %.3f, want %.3f both", i, wall[i], cpu[i], want[i])
		}
	}
}

func TestQuartiles(t *testing.T) {
	for _, tc := range []struct {
		in     []float64
		lo, hi float64
	}{
		{[]float64{5}, 5, 5},
		{[]float64{4, 1, 3, 2}, 1.5, 3.5},
		{[]float64{5, 1, 4, 2, 3}, 1.5, 4.5},
	} {
		lo, hi := quartiles(tc.in)
		if lo != tc.lo || hi != tc.hi {
			t.Errorf("quartiles(%v) = %v, %v; want %v, %v", tc.in, lo, hi, tc.lo, tc.hi)
		}
	}
}
