# kvc container: build stage installs the packages; runtime stage holds bun, the
# app, the Vulkan loader and what Dawn needs. The NVIDIA Vulkan ICD comes from the
# container toolkit at run time:
#   docker run --gpus all -e NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics \
#     -v /path/to/models:/models kvc generate --model /models/X --prompt "Hello"
FROM debian:bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates nodejs npm \
    && npm install -g bun@1.4.5 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json bun.lock ./
RUN bun install --frozen-lockfile --production
COPY src ./src
COPY kernels ./kernels
COPY models ./models

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libvulkan1 ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --create-home --uid 10001 kvc
COPY --from=build /usr/local/lib/node_modules/bun/bin/bun.exe /usr/local/bin/bun
COPY --from=build --chown=kvc /app /app
WORKDIR /app
USER kvc
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics
ENTRYPOINT ["bun", "src/main.ts"]
CMD ["--help"]
