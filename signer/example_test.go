package signer_test

import (
	"fmt"
	"time"

	"github.com/seed-a64a90cf/imagegate/signer"
)

// The documented known answer: key "k3y", path "/acc/img1/public", exp 1700000000.
func ExampleSign() {
	fmt.Println(signer.Sign([]byte("k3y"), "/acc/img1/public", 1700000000))
	// Output: 771f51010c17ffb2b065bc35eff1a8e88ffc4f3d9f7448877b42845743ebfb9e
}

// Every moment inside one window maps to the same exp, a multiple of the
// window at least MinRemaining ahead.
func ExampleWindow_Expiry() {
	w := signer.Window{Size: time.Hour, MinRemaining: 5 * time.Minute}
	for _, now := range []string{"10:00:00", "10:40:00", "10:55:00", "10:55:01"} {
		t, _ := time.Parse(time.DateTime, "2026-11-27 "+now)
		exp, fresh := w.Expiry(t)
		fmt.Printf("%s → exp %s, handed out until %s\n", now, exp.Format(time.TimeOnly), fresh.Format(time.TimeOnly))
	}
	// Output:
	// 10:00:00 → exp 11:00:00, handed out until 10:55:00
	// 10:40:00 → exp 11:00:00, handed out until 10:55:00
	// 10:55:00 → exp 11:00:00, handed out until 10:55:00
	// 10:55:01 → exp 12:00:00, handed out until 11:55:00
}

func ExampleSigner_URL() {
	s, err := signer.New(signer.Config{
		DeliveryURL: "https://imagedelivery.net",
		AccountHash: "acc",
		Key:         []byte("k3y"),
		Window:      signer.Window{Size: time.Hour, MinRemaining: 5 * time.Minute},
		MaxBytes:    1 << 20, // 1 MiB: about 1,700 URLs of UUID images
	})
	if err != nil {
		panic(err)
	}
	now := time.Unix(1699999000, 0)
	u, hit := s.URL("img1", "public", false, now)
	fmt.Println(u.String, hit)
	u, hit = s.URL("img1", "public", false, now.Add(30*time.Minute))
	fmt.Println(u.Expires.Unix(), hit)
	u, _ = s.URL("users/100%", "avatar", true, now) // a public variant: no signature
	fmt.Println(u.String)
	// Output:
	// https://imagedelivery.net/acc/img1/public?exp=1700002800&sig=7a8280616f9463ea5b3e78fc964dab9b3cfeb1bb3832c9842e92ee4833f6c212 false
	// 1700002800 true
	// https://imagedelivery.net/acc/users/100%25/avatar
}
