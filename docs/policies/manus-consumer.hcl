# For applications, connectors and Vault Agents that need a Manus bearer
# token: read the token, nothing else. They can never see or change the
# credential it is minted from. The path is exact: a glob (manus/token*)
# would also grant manus/token/refresh.
path "manus/token" {
  capabilities = ["read"]
}
