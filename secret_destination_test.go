package manus

import (
	"context"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

const rotatedSecret = "f0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5968778695a4b3c2d1e0f"

// TestRotationGoesOnlyToAConfirmedDestination: someone who may update the
// config plants a destination (base_url, or a ca_cert for whoever is on the
// network path) with a secret of their own; the operator then rotates the
// secret as before, with client_secret alone. The rotation answers 400
// naming the stored destination and the fields to restate, sends the new
// secret nowhere and stores nothing. Written with the destination restated,
// it goes there, and the answer says where.
func TestRotationGoesOnlyToAConfirmedDestination(t *testing.T) {
	capture, captureURL := newCaptureServer(t)
	plantedCA := testCertificatePEM(t)
	for name, tc := range map[string]struct {
		planted      map[string]any
		unconfirmed  []string
		restate      map[string]any // with the rotation: still refused
		stillRefused string
	}{
		"planted base_url": {
			planted:     map[string]any{"base_url": captureURL},
			unconfirmed: []string{"base_url", captureURL + tokenEndpointPath},
		},
		"planted ca_cert": {
			planted:      map[string]any{"ca_cert": plantedCA, "base_url": ""},
			unconfirmed:  []string{"ca_cert", "CN=test proxy CA"},
			restate:      map[string]any{"base_url": ""},
			stillRefused: "ca_cert",
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newTestEnv(t)
			e.configure(nil)
			e.manus.AddClient(testClientID, rotatedSecret)
			planted := map[string]any{"client_secret": "the planter's own secret", "verify_credentials": false}
			for k, v := range tc.planted {
				planted[k] = cmpOr(v, e.baseURL)
			}
			resp, err := e.writeConfig(planted)
			requireOK(t, resp, err) // it carries a secret: accepted, as before
			stored, _ := readConfig(context.Background(), e.storage)

			for _, verify := range []bool{true, false} {
				resp, err := e.writeConfig(map[string]any{"client_secret": rotatedSecret, "verify_credentials": verify})
				status, msg := failureOf(t, resp, err)
				if status != http.StatusBadRequest || !strings.Contains(msg, "client_secret") || strings.Contains(msg, rotatedSecret) {
					t.Fatalf("rotation (verify %v): %d %q; want a 400 naming client_secret", verify, status, msg)
				}
				for _, want := range tc.unconfirmed {
					if !strings.Contains(msg, want) {
						t.Errorf("the refusal does not name %q: %q", want, msg)
					}
				}
			}
			if tc.restate != nil {
				rotation := map[string]any{"client_secret": rotatedSecret}
				for k, v := range tc.restate {
					rotation[k] = cmpOr(v, e.baseURL)
				}
				resp, err := e.writeConfig(rotation)
				if _, msg := failureOf(t, resp, err); !strings.Contains(msg, tc.stillRefused) {
					t.Fatalf("a rotation restating only part of the destination: %q, want it refused naming %s", msg, tc.stillRefused)
				}
			}
			if now, _ := readConfig(context.Background(), e.storage); !reflect.DeepEqual(now, stored) {
				t.Fatal("a refused rotation changed the stored config")
			}
			assertNothingCaptured(t, capture.Requests(), rotatedSecret)

			// The destination restated in the same write: the secret goes there.
			resp, err = e.writeConfig(map[string]any{"client_secret": rotatedSecret, "base_url": e.baseURL, "ca_cert": ""})
			requireOK(t, resp, err)
			if resp.Data["token_url"] != e.baseURL+tokenEndpointPath || resp.Data["trusted_roots"] != "the system roots" || resp.Data["verified"] != true {
				t.Fatalf("the rotation's answer does not say where it was verified: %v", resp.Data)
			}
			assertNothingCaptured(t, capture.Requests(), rotatedSecret)
		})
	}
}

// cmpOr is v, or def where v is "" (a placeholder for the stand-in's URL).
func cmpOr(v any, def string) any {
	if v == "" {
		return def
	}
	return v
}

func assertNothingCaptured(t *testing.T, requests []string, secret string) {
	t.Helper()
	for _, r := range requests {
		if strings.Contains(r, secret) {
			t.Fatalf("the rotated secret reached a destination its writer did not confirm: %.80q", r)
		}
	}
}

// TestSecretOnlyRotationAtTheDefaultDestination: with base_url and ca_cert
// at their defaults, rotating is still client_secret alone, and the answer
// says where the secret goes.
func TestSecretOnlyRotationAtTheDefaultDestination(t *testing.T) {
	e := newTestEnv(t)
	resp, err := e.writeConfig(map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "verify_credentials": false})
	requireOK(t, resp, err)
	resp, err = e.writeConfig(map[string]any{"client_secret": rotatedSecret, "verify_credentials": false})
	requireOK(t, resp, err)
	want := map[string]any{"token_url": defaultBaseURL + tokenEndpointPath, "trusted_roots": "the system roots", "verified": false}
	if !reflect.DeepEqual(resp.Data, want) {
		t.Fatalf("answer %v, want %v", resp.Data, want)
	}
	if cfg, _ := readConfig(context.Background(), e.storage); cfg.ClientSecret != rotatedSecret {
		t.Fatal("the rotation was not stored")
	}
}

// TestConfigWriteSaysWhatItTrusts: a write with ca_cert answers with the
// certificates the endpoint is checked against, by subject.
func TestConfigWriteSaysWhatItTrusts(t *testing.T) {
	e := newTestEnv(t)
	resp, err := e.writeConfig(map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "ca_cert": testCertificatePEM(t), "verify_credentials": false})
	requireOK(t, resp, err)
	if roots, _ := resp.Data["trusted_roots"].(string); !strings.Contains(roots, "1 certificate") || !strings.Contains(roots, "CN=test proxy CA") {
		t.Fatalf("trusted_roots = %q; want the certificate by subject", roots)
	}
}

// TestRegistrationRestrictsBaseURL: with MANUS_ALLOWED_BASE_URLS set at
// registration, no config write can point base_url elsewhere, and a stored
// config that points elsewhere is not used: nothing is sent. A malformed
// list stops the mount from loading, naming the variable.
func TestRegistrationRestrictsBaseURL(t *testing.T) {
	capture, captureURL := newCaptureServer(t)
	e := newTestEnv(t)
	t.Setenv(allowedBaseURLsEnv, "https://api.manus.im,\thttps://b.example "+strings.ToUpper(e.baseURL[:4])+e.baseURL[4:]+"/")
	e.b.Clean(context.Background())
	e.b = e.newBackend()
	e.configure(nil)

	resp, err := e.writeConfig(map[string]any{"base_url": captureURL, "client_secret": testClientSecret})
	status, msg := failureOf(t, resp, err)
	if status != http.StatusBadRequest || !strings.Contains(msg, "base_url") || !strings.Contains(msg, allowedBaseURLsEnv) {
		t.Fatalf("got %d %q; want a 400 naming base_url and %s", status, msg, allowedBaseURLsEnv)
	}

	// A config stored before the restriction, pointing elsewhere.
	t.Setenv(allowedBaseURLsEnv, "")
	e.b.Clean(context.Background())
	e.b = e.newBackend()
	resp, err = e.writeConfig(map[string]any{"base_url": captureURL, "client_secret": testClientSecret, "verify_credentials": false})
	requireOK(t, resp, err)
	t.Setenv(allowedBaseURLsEnv, e.baseURL)
	e.b.Clean(context.Background())
	e.b = e.newBackend()
	if _, msg := e.readTokenError(); !strings.Contains(msg, allowedBaseURLsEnv) || !strings.Contains(msg, "nothing is sent") {
		t.Fatalf("a read with a disallowed stored base_url: %q", msg)
	}
	if n := len(capture.Requests()); n != 0 {
		t.Fatalf("the disallowed destination received %d requests", n)
	}

	t.Setenv(allowedBaseURLsEnv, "http://example.com")
	conf := logical.TestBackendConfig()
	conf.StorageView = &logical.InmemStorage{}
	if _, err := Factory(context.Background(), conf); err == nil || !strings.Contains(err.Error(), allowedBaseURLsEnv) {
		t.Fatalf("Factory with a plain-http remote entry: %v; want an error naming %s", err, allowedBaseURLsEnv)
	}
}
