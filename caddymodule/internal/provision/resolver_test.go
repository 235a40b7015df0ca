package provision

import "testing"

func TestIsPlaceholder(t *testing.T) {
	for s, want := range map[string]bool{
		"{env.CF_IMAGES_KEY}": true, "{file./run/k}": true, "prefix-{env.X}": true,
		"Oix0bbNaT8Rge9PuyxUBrjI6zrgnsyJ5=": false, "{": false, "}{": false, "": false,
	} {
		if got := IsPlaceholder(s); got != want {
			t.Errorf("IsPlaceholder(%q) = %v", s, got)
		}
	}
}
