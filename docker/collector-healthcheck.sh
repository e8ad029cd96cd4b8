#!/bin/bash
# The collector image's health check (Docker HEALTHCHECK and the ECS task definition's healthCheck): GET /readyz
# on the collector's HTTP port, healthy on 200. Bash's /dev/tcp: no curl in the image.
set -u
addr="${GPUCOST_HTTP_ADDR:-0.0.0.0:8080}"
port="${addr##*:}"
exec 3<>"/dev/tcp/127.0.0.1/${port}" || { echo "nothing listens on 127.0.0.1:${port}"; exit 1; }
printf 'GET /readyz HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$port" >&3
IFS= read -r -t 4 status <&3 || { echo "no answer from /readyz on port ${port}"; exit 1; }
status="${status%$'\r'}"
case "$status" in
  "HTTP/1."?" 200"*) exit 0 ;;
  *) echo "not ready: ${status}"; exit 1 ;;
esac
