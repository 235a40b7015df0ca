package caddyargs

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// at returns a dispenser positioned on the first token of line.
func at(line string) *caddyfile.Dispenser {
	d := caddyfile.NewTestDispenser(line)
	d.Next()
	return d
}

func TestReaders(t *testing.T) {
	if v, err := One(at("prefix /img")); err != nil || v != "/img" {
		t.Errorf("One = %q, %v", v, err)
	}
	for _, line := range []string{"prefix", "prefix /a /b"} {
		if _, err := One(at(line)); err == nil {
			t.Errorf("One(%q) accepted", line)
		}
	}
	if v, err := Append(at("variants b c"), []string{"a"}); err != nil || strings.Join(v, ",") != "a,b,c" {
		t.Errorf("Append = %v, %v", v, err)
	}
	if _, err := Append(at("variants"), nil); err == nil {
		t.Error("Append accepted no arguments")
	}
	if err := None(at("per_image")); err != nil {
		t.Error(err)
	}
	if err := None(at("per_image yes")); err == nil {
		t.Error("None accepted an argument")
	}
	if v, err := Duration(at("window 1d")); err != nil || v != caddy.Duration(24*time.Hour) {
		t.Errorf("Duration = %v, %v", v, err)
	}
	for _, line := range []string{"window soon", "window -1m", "window 0s"} {
		if _, err := Duration(at(line)); err == nil || !strings.Contains(err.Error(), "window: want a positive duration") {
			t.Errorf("Duration(%q) = %v", line, err)
		}
	}
	if v, err := Int(at("cache_size 5000"), 1, "entries"); err != nil || v != 5000 {
		t.Errorf("Int = %v, %v", v, err)
	}
	for _, line := range []string{"cache_size 0", "cache_size many"} {
		if _, err := Int(at(line), 1, "entries"); err == nil || !strings.Contains(err.Error(), "cache_size: want a whole number of entries") {
			t.Errorf("Int(%q) = %v", line, err)
		}
	}
}
