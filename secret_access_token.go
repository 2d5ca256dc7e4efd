package manus

import (
	"context"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

const secretTypeAccessToken = "manus_access_token"

// secretAccessToken is the lease type of a token read. It has no Renew, so
// leases are not renewable: the token's expiry is fixed by Manus.
func (b *backend) secretAccessToken() *framework.Secret {
	return &framework.Secret{
		Type:   secretTypeAccessToken,
		Fields: tokenResponseFields(),
		Revoke: b.revokeAccessToken,
	}
}

// revokeAccessToken ends a lease and does nothing upstream. The bearer token
// is shared by every reader of the mount, and Manus offers no way to revoke
// it, so revocation always succeeds: a failing Revoke would leave leases
// behind as irrevocable and block `vault secrets disable`.
func (b *backend) revokeAccessToken(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
	b.Logger().Debug("token lease revoked; the shared bearer token stays valid at Manus until it expires")
	return nil, nil
}
