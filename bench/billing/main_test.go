package main

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/seed-a64a90cf/imagegate/signer"
)

func TestSimulateBounds(t *testing.T) {
	hour := signer.Window{Size: time.Hour, MinRemaining: 5 * time.Minute}
	rng := rand.New(rand.NewPCG(1, 2))

	// One image viewed 50 times inside one 10-minute visit: the browser
	// fetches it once, or twice if the visit straddles a re-signing point.
	m := model{users: 1, views: 50, distinct: 1, days: 30, awake: 16 * time.Hour, sessions: 1, visit: 10 * time.Minute}
	if got := m.simulate(hour, rng); got < 30 || got > 60 {
		t.Errorf("one image per visit: %d deliveries in 30 days, want 30..60", got)
	}

	// Every view a different image: nothing to save.
	m = model{users: 3, views: 50, distinct: 1_000_000, days: 2, awake: 16 * time.Hour}
	if got := m.simulate(hour, rng); got < 299 { // allow a rare repeat
		t.Errorf("all distinct: %d deliveries, want about 300", got)
	}

	// A longer window never costs more.
	m = model{users: 50, views: 50, distinct: 20, days: 5, awake: 16 * time.Hour}
	short := m.simulate(hour, rand.New(rand.NewPCG(3, 4)))
	long := m.simulate(signer.Window{Size: 24 * time.Hour, MinRemaining: time.Hour}, rand.New(rand.NewPCG(3, 4)))
	if long > short || short > 50*50*5 {
		t.Errorf("window 1h: %d, 24h: %d, per request: %d", short, long, 50*50*5)
	}
}
