# syntax=docker/dockerfile:1.7
# gpucost-agent: the GPU node agent (DaemonSet on GPU nodes, charts/gpucost-agent).
#   docker build -f docker/agent.Dockerfile -t gpucost-agent .
#
# NVML (libnvidia-ml.so.1) is not in the image: the NVIDIA container runtime injects the host driver's copy at
# start (runtimeClassName: nvidia, or the NVIDIA runtime as the node's default), driven by the two NVIDIA_*
# variables below; without it `gpucost-agent --source nvml` fails naming libnvidia-ml.so.1.

FROM rust:1.95.0-slim-trixie AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p gpucost-agent --bin gpucost-agent \
 && install -D -m 0755 target/release/gpucost-agent /out/gpucost-agent

FROM debian:13.6-slim
LABEL org.opencontainers.image.title="gpucost-agent" \
      org.opencontainers.image.description="GPU node agent: per-process GPU use through NVML, streamed to the gpucost collector" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 gpucost \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin gpucost
COPY --from=build /out/gpucost-agent /usr/local/bin/gpucost-agent
# NVML needs only the driver's utility libraries; the agent watches every GPU of the node without requesting one.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=utility \
    GPUCOST_LOG_FORMAT=json
# The image's user is non-root. On a GPU node the chart runs the agent as root with every capability dropped:
# Kubernetes gives no added capabilities to non-root processes, and the kubelet's pod-resources socket and
# other users' /proc/<pid>/environ (MLflow run ids) are readable by root only. The chart's
# securityContext.runAsUser picks the non-root trade-off (charts/gpucost-agent/README.md).
USER 10001:10001
# Kubernetes ignores image health checks; the chart's probes watch the agent.
HEALTHCHECK NONE
ENTRYPOINT ["/usr/local/bin/gpucost-agent"]
