package httpcond

import "testing"

func TestNoneMatch(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   bool
	}{
		{`"a"`, true},
		{`W/"a"`, true},
		{`"b", "a"`, true},
		{` "b" ,W/"a" `, true},
		{`*`, true},
		{`"b"`, false},
		{``, false},
		{`a`, false},
		{`"a`, false},
	} {
		if got := NoneMatch(tc.header, `"a"`); got != tc.want {
			t.Errorf("NoneMatch(%q) = %v, want %v", tc.header, got, tc.want)
		}
	}
}
