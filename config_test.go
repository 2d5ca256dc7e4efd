package manus

import (
	"testing"
	"time"
)

func TestShortDuration(t *testing.T) {
	cases := map[time.Duration]string{
		12 * time.Hour:            "12h",
		10 * time.Minute:          "10m",
		30 * time.Second:          "30s",
		90 * time.Minute:          "1h30m",
		time.Hour + 5*time.Second: "1h0m5s",
		0:                         "0s",
		1500 * time.Millisecond:   "1.5s",
	}
	for d, want := range cases {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%s) = %q, want %q", d, got, want)
		}
	}
}
