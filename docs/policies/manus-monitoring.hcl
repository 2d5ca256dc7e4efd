# For Prometheus (or any scraper) collecting the mount's metrics: read
# manus/metrics, nothing else. Not manus/status: it shows the client ID,
# base URL and last upstream error text, and with probe=true it makes the
# plugin call Manus (minting a token if none is cached), which a scraper
# polling every few seconds must never do. Everything the alerts need is in
# the metrics.
path "manus/metrics" {
  capabilities = ["read"]
}
