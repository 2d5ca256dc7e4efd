# For the people who manage the mount: set, rotate, inspect and remove the
# Manus credential, read a token to check it works, replace it now, and
# clear token leases.
path "manus/config" {
  capabilities = ["create", "read", "update", "delete"]
}

path "manus/token" {
  capabilities = ["read"]
}

# `vault write -f manus/token/refresh`: replace the token now (after Manus
# stopped accepting it, or to end a failure back-off).
path "manus/token/refresh" {
  capabilities = ["update"]
}

# `vault lease revoke -prefix manus/token` (ends leases only; the bearer
# token stays valid at Manus until it expires).
path "sys/leases/revoke-prefix/manus/token" {
  capabilities = ["update", "sudo"]
}

# `vault read manus/status [probe=true]`: what the plugin thinks is going on.
path "manus/status" {
  capabilities = ["read"]
}
