package manus

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// The read-cost benchmarks run a token read through the framework
// (HandleRequest) on in-memory storage, as Vault's gRPC layer does inside the
// plugin process. Figures and how to reproduce them: BENCHMARKS.md.

func benchEnv(b *testing.B) (*testEnv, *logical.Request) {
	return benchEnvIn(b, readModes[0])
}

func benchEnvIn(b *testing.B, mode readMode) (*testEnv, *logical.Request) {
	e := newTestEnv(b)
	e.b.clock = wallClock // the test clock's mutex would be the contention measured
	e.configure(mode.config())
	return e, &logical.Request{Operation: logical.ReadOperation, Path: "token", Storage: e.storage, MountPoint: "manus/"}
}

// BenchmarkTokenReadCached is one read of a cached, fresh token, in each
// read mode: a leased secret, or data with the rotating-secret fields.
func BenchmarkTokenReadCached(b *testing.B) {
	for _, mode := range readModes {
		b.Run(mode.name, func(b *testing.B) {
			e, req := benchEnvIn(b, mode)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				resp, err := e.b.HandleRequest(ctx, req)
				if err != nil || resp == nil || (resp.Secret == nil) == mode.leased {
					b.Fatal("read failed or answered in the wrong mode")
				}
			}
			if e.manus.Mints() != 1 {
				b.Fatalf("mints = %d", e.manus.Mints())
			}
		})
	}
}

// BenchmarkTokenReadCachedParallel is the same read from every core at once:
// it shows contention on the read path.
func BenchmarkTokenReadCachedParallel(b *testing.B) {
	e, req := benchEnv(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := *req
			if _, err := e.b.HandleRequest(ctx, &r); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkTokenReadColdMint is a read that must mint: a new cache each time,
// against the stand-in over loopback HTTP.
func BenchmarkTokenReadColdMint(b *testing.B) {
	e, req := benchEnv(b)
	ctx := context.Background()
	// Reads see a storage that holds only the config, so no persisted token
	// is restored and every read mints; the plugin still persists each
	// token into the mount's own storage, as it would in Vault.
	config, err := e.storage.Get(ctx, configStorageKey)
	if err != nil || config == nil {
		b.Fatalf("no stored config: %v", err)
	}
	configOnly := &logical.InmemStorage{}
	if err := configOnly.Put(ctx, config); err != nil {
		b.Fatal(err)
	}
	req.Storage = configOnly
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		e.b.swapTokenCache(nil, errMountReconfigured)
		if _, err := e.b.HandleRequest(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if got := e.manus.Mints(); got < b.N {
		b.Fatalf("%d mints for %d cold reads", got, b.N)
	}
}

// BenchmarkTokenCacheHit is the cache alone, without the framework: the part
// of a read the plugin's own code costs.
func BenchmarkTokenCacheHit(b *testing.B) {
	e, _ := benchEnv(b)
	ctx := context.Background()
	cache, err := e.b.loadTokenCache(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if tok, _, _, err := cache.token(ctx); err != nil || tok == nil {
			b.Fatal("no token")
		}
	}
}

// BenchmarkCACertParse is the check of a written ca_cert (canonicalCACert)
// at 1, 8 and the most certificates it takes, and the load of a stored one
// far past that bound (a config stored before the bound existed): the time
// per certificate stays flat, where the parser before 0.2.0 copied the rest
// of the input for every certificate (9.4 MB took 27 s).
func BenchmarkCACertParse(b *testing.B) {
	ca := testCertificatePEM(b)
	for _, n := range []int{1, 8, min(maxCACertificates, maxCACertBytes/len(ca))} {
		data := strings.Repeat(ca, n)
		b.Run(fmt.Sprintf("write/%d_certs", n), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := canonicalCACert(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	stored := strings.Repeat(ca, (9<<20)/len(ca))
	b.Run("load/9MiB", func(b *testing.B) {
		b.SetBytes(int64(len(stored)))
		for b.Loop() {
			if _, err := loadCACert(stored); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRedactUpstreamText is the worst case of what one failed token
// request costs in redaction: the longest secret and withheld client_id a
// config may hold, against the longest text the client reads from an
// upstream (a body at the response cap), none of which matches, so every
// window is looked up. It runs on every failed attempt.
func BenchmarkRedactUpstreamText(b *testing.B) {
	secret := strings.Repeat("0123456789abcdef", maxClientSecretLength/16)
	clientID := strings.Repeat("fedcba9876543210", maxClientIDLength/16)
	text := strings.Repeat("The quick brown fox jumps over the lazy dog; ", maxTokenResponseBytes/45+1)[:maxTokenResponseBytes]
	b.Run(fmt.Sprintf("secret=%dB,text=%dKiB", len(secret), len(text)>>10), func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		b.ReportAllocs()
		for b.Loop() {
			r := newRedactor(secret, clientID)
			if r.redact(text) != text {
				b.Fatal("harmless text was changed")
			}
		}
	})
}
