# kvc container: the "build" stage installs bun and the packages and makes the
# single binary dist/kvc (`bun run build`); the runtime stage holds only that
# binary, the Vulkan loader and the libraries Dawn and the NVIDIA Vulkan driver load.
#
#   docker build -t kvc .
#   docker run --gpus all -p 8080:8080 -v /srv/models:/models:ro kvc serve --model /models/X
#
# The NVIDIA container toolkit mounts the driver's Vulkan ICD (nvidia_icd.json and
# libGLX_nvidia) only for the "graphics" capability, set below. Where the loader does
# not find it, name it: -e VK_DRIVER_FILES=/usr/share/vulkan/icd.d/nvidia_icd.json
# (or /etc/vulkan/icd.d/..., wherever the toolkit put it). Settings are KVC_*
# variables or flags; the health check asks 127.0.0.1:$KVC_PORT/health, so change
# the port with -e KVC_PORT rather than --port.
FROM debian:bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates nodejs npm \
    && npm install -g --no-audit --no-fund bun@1.4.5 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json bun.lock ./
COPY patches patches
RUN bun install --frozen-lockfile --production
COPY scripts/build.ts scripts/
COPY src src
COPY cli cli
COPY routes routes
COPY bench/*.ts bench/
COPY kernels kernels
COPY web web
COPY models/kvc-nano models/kvc-nano
RUN bun run build && ./dist/kvc --help > /dev/null

FROM debian:bookworm-slim AS runtime
# libvulkan1: the loader Dawn opens; libstdc++6: Dawn itself; libx11-6, libxext6:
# what the NVIDIA ICD (libGLX_nvidia.so.0) links against
RUN apt-get update && apt-get install -y --no-install-recommends libvulkan1 libstdc++6 libx11-6 libxext6 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --user-group kvc
COPY --from=build /app/dist/kvc /usr/local/bin/kvc
USER kvc
WORKDIR /home/kvc
# the binary writes its embedded Dawn library and kvc-nano to ~/.cache/kvc on first
# use; with --read-only add --tmpfs /home/kvc/.cache (or set KVC_CACHE_DIR)
ENV KVC_HOST=0.0.0.0 \
    KVC_PORT=8080 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${KVC_PORT:-8080} && printf 'GET /health HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["kvc"]
CMD ["serve"]
