// Command manus-standin serves the strict local stand-in for the Manus token
// endpoint, for `make dev` and manual experiments. It is not a Manus
// replacement: it knows the clients given on its command line and nothing of
// the users API.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/standin"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8399", "loopback address to listen on")
	clientID := flag.String("client-id", "tm_dev_standin_client", "client_id the stand-in accepts")
	clientSecret := flag.String("client-secret", os.Getenv("MANUS_STANDIN_CLIENT_SECRET"), "client_secret the stand-in accepts (default $MANUS_STANDIN_CLIENT_SECRET)")
	lifetime := flag.Duration("lifetime", time.Hour, "expires_in of issued tokens")
	flag.Parse()

	if *clientSecret == "" {
		log.Fatal("manus-standin: set -client-secret or MANUS_STANDIN_CLIENT_SECRET")
	}
	server := standin.New()
	server.AddClient(*clientID, *clientSecret)
	server.SetLifetime(*lifetime)

	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("manus-standin: %v", err)
	}
	fmt.Printf("manus-standin: serving POST http://%s%s for client_id %s (tokens live %s); stats at /_standin/stats\n",
		listener.Addr(), standin.TokenPath, *clientID, *lifetime)
	log.Fatal(http.Serve(listener, server))
}
