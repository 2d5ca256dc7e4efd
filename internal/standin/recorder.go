package standin

import (
	"io"
	"net/http"
	"sync"
)

// Recorder is a host the plugin must never reach: it records every request
// it receives (method, path and body) and answers 500. Tests point a
// refused config write at one and check it received nothing.
type Recorder struct {
	mu       sync.Mutex
	requests []string
}

// ServeHTTP records the request.
func (r *Recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.requests = append(r.requests, req.Method+" "+req.URL.Path+" "+string(body))
	r.mu.Unlock()
	w.WriteHeader(http.StatusInternalServerError)
}

// Requests lists what was received, oldest first.
func (r *Recorder) Requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.requests...)
}
