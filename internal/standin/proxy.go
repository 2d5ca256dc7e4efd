package standin

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
)

// Proxy is an HTTPS proxy (CONNECT only) that tunnels every request to one
// address, whatever host it names, and remembers the hosts it was asked
// for: the plugin's network path in tests of HTTPS_PROXY and ca_cert. Once
// Intercept is called it ends the TLS itself, with a certificate of its
// own, and records what it is sent instead, as someone on the path would.
type Proxy struct {
	target string
	mu     sync.Mutex
	hosts  []string
	tls    *tls.Config
	// Captured holds the requests sent while intercepting.
	Captured Recorder
}

// NewProxy makes a proxy tunnelling to target (host:port).
func NewProxy(target string) *Proxy { return &Proxy{target: target} }

// Intercept makes the proxy end the TLS of later tunnels with config.
func (p *Proxy) Intercept(config *tls.Config) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tls = config
}

// Hosts lists the hosts CONNECT asked for, oldest first.
func (p *Proxy) Hosts() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.hosts...)
}

// ServeHTTP answers CONNECT and serves the tunnel.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	p.mu.Lock()
	p.hosts = append(p.hosts, r.Host)
	intercept := p.tls
	p.mu.Unlock()
	client, buf, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	_, _ = client.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
	if intercept != nil {
		p.capture(tls.Server(client, intercept))
		return
	}
	upstream, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	go pipe(upstream, buf)
	go pipe(client, upstream)
}

// capture records the one request sent through an intercepted tunnel and
// answers it as the Recorder does.
func (p *Proxy) capture(conn *tls.Conn) {
	defer conn.Close()
	req, err := http.ReadRequest(bufio.NewReader(conn))
	if err != nil {
		return
	}
	answer := httptest.NewRecorder()
	p.Captured.ServeHTTP(answer, req)
	_ = answer.Result().Write(conn)
}

func pipe(dst io.WriteCloser, src io.Reader) {
	defer dst.Close()
	_, _ = io.Copy(dst, src)
}
