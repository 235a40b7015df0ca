package signer

import (
	"testing"
	"time"
)

func TestWindowExpiry(t *testing.T) {
	w := Window{Size: time.Hour, MinRemaining: 5 * time.Minute}
	base := time.Unix(1700000000-1700000000%3600, 0) // an hour boundary
	for i, tc := range []struct {
		now     time.Time
		wantExp time.Time
	}{
		{base, base.Add(time.Hour)},                                           // now+5m rounds up to the next boundary
		{base.Add(54 * time.Minute), base.Add(time.Hour)},                     // 6m left: still this window
		{base.Add(55 * time.Minute), base.Add(time.Hour)},                     // exactly 5m left is enough
		{base.Add(55*time.Minute + time.Nanosecond), base.Add(2 * time.Hour)}, // less than 5m: next window
		{base.Add(-5 * time.Minute), base},                                    // now+5m on a boundary
	} {
		exp, fresh := w.Expiry(tc.now)
		if !exp.Equal(tc.wantExp) {
			t.Errorf("case %d: exp = %v, want %v", i, exp, tc.wantExp)
		}
		if exp.Unix()%3600 != 0 {
			t.Errorf("case %d: exp %d is not a multiple of the window", i, exp.Unix())
		}
		if exp.Sub(tc.now) < w.MinRemaining {
			t.Errorf("case %d: only %v left, want at least %v", i, exp.Sub(tc.now), w.MinRemaining)
		}
		if !fresh.Equal(exp.Add(-w.MinRemaining)) {
			t.Errorf("case %d: fresh until %v, want exp-min_remaining", i, fresh)
		}
	}
}

func TestWindowValidate(t *testing.T) {
	for i, tc := range []struct {
		w  Window
		ok bool
	}{
		{Window{time.Hour, 5 * time.Minute}, true},
		{Window{time.Hour, time.Hour}, false},
		{Window{time.Hour, -time.Second}, false},
		{Window{1500 * time.Millisecond, 0}, false},
		{Window{0, 0}, false},
	} {
		if err := tc.w.Validate(); (err == nil) != tc.ok {
			t.Errorf("case %d: Validate() = %v, want ok=%v", i, err, tc.ok)
		}
	}
}
