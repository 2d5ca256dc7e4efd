package manus

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
)

// replayTransport answers every request with one canned response; the
// placeholder {{form}} in the body becomes the request's form, secret
// included, as an echoing upstream would send it.
type replayTransport struct {
	status      int
	contentType string
	body        []byte
}

func (r replayTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	form, _ := io.ReadAll(req.Body)
	body := bytes.ReplaceAll(r.body, []byte("{{form}}"), form)
	return &http.Response{
		StatusCode: r.status,
		Header:     http.Header{"Content-Type": {r.contentType}},
		Body:       io.NopCloser(bytes.NewReader(body)),
		Request:    req,
	}, nil
}

// FuzzTokenResponse feeds arbitrary token-endpoint answers through the real
// oauth2 client and the plugin's parsing. Whatever the answer, the plugin
// must not panic, must accept only a usable token, and must never put the
// client secret into an error.
func FuzzTokenResponse(f *testing.F) {
	// Seeds live in testdata/fuzz/FuzzTokenResponse; bodies over the size
	// cap are covered by TestUpstreamFailuresAreExplained, as megabyte seeds
	// would slow every fuzzing run to a crawl.
	secret := "fuzz+secret/with=odd&chars%20and-length-of-forty"
	now := time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, status int, contentType string, body []byte) {
		status = 100 + (status%500+500)%500
		cfg := newDefaultConfig()
		cfg.ClientID, cfg.ClientSecret, cfg.RequestTimeout = "tm_fuzz", secret, 5*time.Second
		client, err := newManusClient(cfg, func() time.Time { return now }, hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		client.transport = replayTransport{status: status, contentType: contentType, body: body}

		tok, err := client.mintToken(context.Background())
		if err != nil {
			var upErr *upstreamError
			if !errors.As(err, &upErr) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			for _, form := range []string{secret, url.QueryEscape(secret), secret[:12]} {
				if strings.Contains(err.Error(), form) {
					t.Fatalf("the client secret leaked into %q", err)
				}
			}
			return
		}
		if status < 200 || status > 299 {
			t.Fatalf("accepted a token from an HTTP %d answer", status)
		}
		if tok.AccessToken == "" {
			t.Fatal("accepted an empty access token")
		}
		if life := tok.ExpiresAt.Sub(tok.MintedAt); life <= 0 || life > maxTokenLifetime {
			t.Fatalf("accepted a token living %s", life)
		}
		if len(body) > maxTokenResponseBytes {
			t.Fatalf("accepted a %d-byte body", len(body))
		}
	})
}

// FuzzConfigWrite writes arbitrary settings through the framework. A write
// either stores a config that satisfies every rule or stores nothing, and
// no error or warning ever quotes the client secret.
func FuzzConfigWrite(f *testing.F) {
	storage := &logical.InmemStorage{}
	b := newBackend(wallClock)
	conf := logical.TestBackendConfig()
	conf.StorageView = storage
	if err := b.setup(context.Background(), conf); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, clientID, clientSecret, baseURL, timeout, threshold, caCert string) {
		ctx := context.Background()
		_ = storage.Delete(ctx, configStorageKey)
		data := map[string]any{"client_id": clientID, "client_secret": clientSecret, "verify_credentials": false}
		for k, v := range map[string]string{"base_url": baseURL, "request_timeout": timeout, "refresh_threshold": threshold, "ca_cert": caCert} {
			if v != "" {
				data[k] = v
			}
		}
		resp, err := b.HandleRequest(ctx, &logical.Request{Operation: logical.CreateOperation, Path: "config", Data: data, Storage: storage})
		stored, _ := readConfig(ctx, storage)

		failed := err != nil || (resp != nil && resp.IsError())
		if failed && stored != nil {
			t.Fatal("a refused write stored a config")
		}
		if len(clientSecret) >= 8 {
			text := ""
			if err != nil {
				text += err.Error()
			}
			if resp != nil {
				text += strings.Join(resp.Warnings, " ")
				if resp.IsError() {
					text += resp.Error().Error()
				}
			}
			if strings.Contains(text, clientSecret) {
				t.Fatalf("the client secret appears in %q", text)
			}
		}
		if failed {
			return
		}
		if stored == nil {
			t.Fatal("an accepted write stored nothing")
		}
		if err := stored.validate(); err != nil {
			t.Fatalf("stored a config that fails validation: %v", err)
		}
		u, _ := url.Parse(stored.BaseURL)
		if secure := u.Scheme == "https" || (u.Scheme == "http" && isLoopbackIP(u.Hostname())); !secure {
			t.Fatalf("stored base_url %q", stored.BaseURL)
		}
	})
}
