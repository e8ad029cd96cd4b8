# Who may talk to the collector. The collector refuses to start without agent and API tokens (--auth) and without
# TLS on its gRPC port (--tls-cert/--tls-key) unless --insecure; this generates both:
#
# - one agent token per cluster in agent_clusters and one API token per api_tokens entry, kept in clear in the
#   Secrets Manager secret <name>/collector/tokens (for the agents' Kubernetes Secret and for people), and hashed
#   (SHA-256, what `gpucost-collector hash-token` prints) in the auth file the tasks read;
# - a self-signed certificate for the tasks' gRPC port. Agents never see it: they talk TLS to the load balancer's
#   ACM certificate, and the load balancer does not verify its targets' certificates.
#
# ECS passes secrets as environment variables; the image's entrypoint (docker/collector-entrypoint.sh) writes
# GPUCOST_AUTH_TOML, GPUCOST_TLS_CERT_PEM and GPUCOST_TLS_KEY_PEM to files under /tmp and points GPUCOST_AUTH,
# GPUCOST_TLS_CERT and GPUCOST_TLS_KEY at them. The tokens and the key are in the Terraform state too: keep the state
# encrypted. Rotate a token with `terraform apply -replace='module.ecs.random_password.agent_token["<cluster>"]'`
# and a redeploy of the service.

resource "random_password" "agent_token" {
  for_each = toset(var.agent_clusters)

  length  = 48
  special = false
}

resource "random_password" "api_token" {
  for_each = var.api_tokens

  length  = 48
  special = false
}

locals {
  auth_toml = join("\n", concat(
    [for c in var.agent_clusters : "[[agent]]\ncluster = \"${c}\"\nsha256 = \"${sha256(random_password.agent_token[c].result)}\"\n"],
    [for n in sort(keys(var.api_tokens)) : "[[api]]\nname = \"${n}\"\nscope = \"${var.api_tokens[n]}\"\nsha256 = \"${sha256(random_password.api_token[n].result)}\"\n"],
  ))
}

resource "aws_secretsmanager_secret" "tokens" {
  #checkov:skip=CKV2_AWS_57:Tokens are rotated by replacing their random_password and redeploying (see above); a rotation Lambda could not update the agents' Kubernetes Secrets.
  name_prefix             = "${var.name}/collector/tokens-"
  description             = "gpucost collector: agent tokens by cluster and API tokens by name, in clear (the tasks get only their hashes)"
  kms_key_id              = module.key.arn
  recovery_window_in_days = 7
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "tokens" {
  secret_id = aws_secretsmanager_secret.tokens.id
  secret_string = jsonencode({
    agents = { for c in var.agent_clusters : c => random_password.agent_token[c].result }
    api    = { for n, scope in var.api_tokens : n => { scope = scope, token = random_password.api_token[n].result } }
  })
}

resource "aws_secretsmanager_secret" "auth" {
  #checkov:skip=CKV2_AWS_57:Holds token hashes derived from the tokens secret; it changes when they are replaced.
  name_prefix             = "${var.name}/collector/auth-"
  description             = "gpucost collector: the --auth file (token hashes), injected as GPUCOST_AUTH_TOML"
  kms_key_id              = module.key.arn
  recovery_window_in_days = 7
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "auth" {
  secret_id     = aws_secretsmanager_secret.auth.id
  secret_string = local.auth_toml
}

resource "tls_private_key" "grpc" {
  algorithm   = "ECDSA"
  ecdsa_curve = "P256"
}

resource "tls_self_signed_cert" "grpc" {
  private_key_pem       = tls_private_key.grpc.private_key_pem
  validity_period_hours = 24 * 365 * 10 # the load balancer does not check it; replaced with the key if ever needed
  allowed_uses          = ["digital_signature", "key_agreement", "server_auth"]
  dns_names             = ["${var.name}-collector.internal"]

  subject {
    common_name  = "${var.name}-collector.internal"
    organization = "gpucost"
  }
}

resource "aws_secretsmanager_secret" "grpc_tls" {
  #checkov:skip=CKV2_AWS_57:A certificate only the load balancer sees (unverified); replace tls_private_key.grpc and redeploy to rotate.
  name_prefix             = "${var.name}/collector/grpc-tls-"
  description             = "gpucost collector: certificate and key of the tasks' gRPC port (behind the load balancer)"
  kms_key_id              = module.key.arn
  recovery_window_in_days = 7
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "grpc_tls" {
  secret_id = aws_secretsmanager_secret.grpc_tls.id
  secret_string = jsonencode({
    cert = tls_self_signed_cert.grpc.cert_pem
    key  = tls_private_key.grpc.private_key_pem
  })
}
