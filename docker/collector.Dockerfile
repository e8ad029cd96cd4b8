# syntax=docker/dockerfile:1.7
# gpucost-collector: gRPC ingest on 50051, HTTP API, dashboard and /metrics on 8080.
#   docker build -f docker/collector.Dockerfile -t gpucost-collector .
#
# The SQLite ledger lives in /var/lib/gpucost (a volume: EFS on ECS with ledger = "sqlite-efs"); the root filesystem
# can be read-only (the ECS task definition makes it so). `serve` needs tokens and gRPC TLS (--auth, --tls-cert,
# --tls-key, as files or through the entrypoint's GPUCOST_AUTH_TOML / GPUCOST_TLS_*_PEM) or --insecure:
#   docker run --rm -p 8080:8080 -p 50051:50051 gpucost-collector serve --insecure

FROM rust:1.95.0-slim-trixie AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p gpucost-collector --bin gpucost-collector \
 && install -D -m 0755 target/release/gpucost-collector /out/gpucost-collector

FROM debian:13.6-slim
LABEL org.opencontainers.image.title="gpucost-collector" \
      org.opencontainers.image.description="gpucost collector: GPU usage ledger, costs, chargeback, budgets" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 gpucost \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin gpucost \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/gpucost
COPY --from=build /out/gpucost-collector /usr/local/bin/gpucost-collector
#checkov:skip=CKV_DOCKER_4:ADD fetches the RDS CA bundle over HTTPS at build time; COPY cannot fetch a URL.
# The CAs of Amazon RDS, for a PostgreSQL ledger on RDS (sslmode=verify-full&sslrootcert=/etc/ssl/certs/rds-global-bundle.pem).
ADD --chmod=0644 https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem /etc/ssl/certs/rds-global-bundle.pem
COPY --chmod=0755 docker/collector-healthcheck.sh /usr/local/bin/gpucost-healthcheck
COPY --chmod=0755 docker/collector-entrypoint.sh /usr/local/bin/gpucost-entrypoint
ENV GPUCOST_DB=/var/lib/gpucost/gpucost.db \
    GPUCOST_GRPC_ADDR=0.0.0.0:50051 \
    GPUCOST_HTTP_ADDR=0.0.0.0:8080 \
    GPUCOST_LOG_FORMAT=json
WORKDIR /var/lib/gpucost
# ECS bind mounts copy a VOLUME's owner and mode from the image: /tmp stays 1777 under a read-only root. The ledger
# folder is not a VOLUME on purpose: mount one there (EFS on ECS, `-v gpucost:/var/lib/gpucost` with docker run).
VOLUME ["/tmp"]
EXPOSE 8080 50051
USER 10001:10001
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 CMD ["/usr/local/bin/gpucost-healthcheck"]
# Writes secrets given as environment variables (ECS) to files, then runs gpucost-collector with CMD's arguments.
ENTRYPOINT ["/usr/local/bin/gpucost-entrypoint"]
CMD ["serve"]
