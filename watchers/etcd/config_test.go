package etcd

import (
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tether-mesh/tether/watchers"
)

func TestConfigValidate(t *testing.T) {
	// Validate never uses the client, so an unconnected one will do.
	client := &clientv3.Client{}
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "defaults", cfg: Config{Client: client}},
		{name: "naming prefixes", cfg: Config{Client: client, NamingPrefixes: []string{"/naming/", "/grpc/"}}},
		{name: "missing client", cfg: Config{}, wantErr: "Client is missing"},
		{name: "prefix without slash", cfg: Config{Client: client, Prefix: "/tether"}, wantErr: `"/tether" must end with "/"`},
		{name: "empty naming prefix", cfg: Config{Client: client, NamingPrefixes: []string{""}}, wantErr: `"" must end with "/"`},
		{name: "naming inside prefix", cfg: Config{Client: client, NamingPrefixes: []string{"/tether/naming/"}},
			wantErr: "contains prefix"},
		{name: "duplicate naming prefix", cfg: Config{Client: client, NamingPrefixes: []string{"/n/", "/n/"}},
			wantErr: "contains prefix"},
		{name: "negative silence", cfg: Config{Client: client, SilenceTimeout: -time.Second},
			wantErr: "SilenceTimeout -1s must be positive"},
		{name: "progress not shorter than silence",
			cfg:     Config{Client: client, SilenceTimeout: time.Second, ProgressInterval: time.Second},
			wantErr: "ProgressInterval 1s must be shorter"},
		{name: "backoff min above max",
			cfg:     Config{Client: client, BackoffMin: time.Minute, BackoffMax: time.Second},
			wantErr: "BackoffMin 1m0s is longer than BackoffMax 1s"},
		{name: "backoff min above default max", cfg: Config{Client: client, BackoffMin: time.Minute}},
		{name: "negative page size", cfg: Config{Client: client, ListPageSize: -1}, wantErr: "ListPageSize -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate error = %v, expected one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg := Config{SilenceTimeout: 3 * time.Second}.withDefaults()
	if cfg.Prefix != DefaultPrefix {
		t.Errorf("Prefix = %q, expected %q", cfg.Prefix, DefaultPrefix)
	}
	if cfg.ProgressInterval != time.Second {
		t.Errorf("ProgressInterval = %v, expected a third of SilenceTimeout, 1s", cfg.ProgressInterval)
	}
	if cfg.Logger == nil {
		t.Error("Logger is nil after defaults")
	}
}

func TestBackoffGrowsWithJitter(t *testing.T) {
	b := watchers.Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	ceilings := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, ceiling := range ceilings {
		ceiling *= time.Millisecond
		d := b.Next()
		if d < ceiling/2 || d > ceiling {
			t.Errorf("delay %d = %v, expected within [%v, %v]", i, d, ceiling/2, ceiling)
		}
	}
	for range 100 {
		if d := b.Next(); d > time.Second {
			t.Fatalf("delay %v after many attempts exceeds the max 1s", d)
		}
	}
	b.Reset()
	if d := b.Next(); d > 100*time.Millisecond {
		t.Errorf("delay after reset = %v, expected at most 100ms", d)
	}
}

func TestLogLimiterSuppressesRepeats(t *testing.T) {
	l := watchers.NewLogLimiter(time.Minute)
	start := time.Unix(1000, 0)
	if ok, _ := l.Allow("a", start); !ok {
		t.Fatal("first line on a topic suppressed")
	}
	if ok, _ := l.Allow("a", start.Add(time.Second)); ok {
		t.Error("repeat within the interval allowed")
	}
	if ok, _ := l.Allow("b", start.Add(time.Second)); !ok {
		t.Error("first line on another topic suppressed")
	}
	ok, suppressed := l.Allow("a", start.Add(2*time.Minute))
	if !ok {
		t.Error("line after the interval suppressed")
	}
	if suppressed != 1 {
		t.Errorf("suppressed = %d, expected 1", suppressed)
	}
}
