// Command vault-plugin-secrets-manus is the plugin binary Vault runs. All
// logic lives in the root package; this only serves it.
package main

import (
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/plugin"
	// Public roots for a host without any: the release image holds only
	// this binary, so a containerized plugin has no system CA bundle to
	// verify https://api.manus.im with. Used only where the system has no
	// roots of its own (crypto/x509.SetFallbackRoots); ca_cert still adds
	// to them.
	_ "golang.org/x/crypto/x509roots/fallback"

	manus "github.com/manus-community/vault-plugin-secrets-manus"
)

func main() {
	// `vault-plugin-secrets-manus --version` tells an operator which release
	// a binary is; Vault itself never passes this flag.
	if len(os.Args) == 2 && os.Args[1] == "--version" {
		fmt.Println(manus.Version)
		return
	}
	// `vault-plugin-secrets-manus --copy-to DIR` installs this binary into
	// a plugin directory, for an init container running the release image
	// (which holds nothing else); Vault never passes this flag either.
	if len(os.Args) == 3 && os.Args[1] == "--copy-to" {
		if err := copySelf(os.Args[2], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "vault-plugin-secrets-manus:", err)
			os.Exit(1)
		}
		return
	}
	startProfilerIfAsked()
	// Multiplexed: one process serves every mount of the plugin.
	err := plugin.ServeMultiplex(&plugin.ServeOpts{
		BackendFactoryFunc: manus.Factory,
	})
	if err != nil {
		hclog.New(&hclog.LoggerOptions{}).Error("plugin shutting down", "error", err)
		os.Exit(1)
	}
}
