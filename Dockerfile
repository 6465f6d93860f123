# syntax=docker/dockerfile:1

# --- build: compile TypeScript with the dev dependencies, then drop them ------------
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Installed inside the image so sharp's prebuilt libvips matches the target platform.
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
# npm run build: tsc's incremental build, and the removal of outputs whose source is gone.
COPY scripts/build.ts ./scripts/
COPY src ./src
# The emulator ships in the image: without Tencent credentials the service starts it beside itself
# (dist/emulator/stand-in.js, loaded only then) and serves fusions from it.
COPY emulator ./emulator
RUN npm run build && npm prune --omit=dev
# The demo page's files (served at / when DEMO_PAGE allows).
COPY public ./public
# Readable by everyone, writable by root alone, whatever modes the checkout had: the service, which runs as node,
# cannot rewrite its own code or pages. The build record is not needed at run time.
RUN rm -f dist/.tsbuildinfo && chmod -R a+rX,go-w package.json node_modules dist public

# --- runtime: the current Node LTS, non-root on read-only files, jemalloc -----------
FROM node:24-bookworm-slim
# glibc's allocator keeps sharp's freed buffers as RSS; jemalloc with a
# background thread and a short decay returns them within a second of V8
# freeing them. One arena: libvips frees a decode's buffers on one thread and
# the next decode allocates on another, and with jemalloc's four arenas per
# CPU each kept its own freed pages through a burst (27 to 73 MiB more at the
# peak); thread caches keep the one arena's lock rare (bench/memory.ts,
# figures in docs/performance.md).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libjemalloc2 \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s "$(find /usr/lib -name libjemalloc.so.2 | head -n 1)" /usr/local/lib/libjemalloc.so.2
ENV NODE_ENV=production \
    LD_PRELOAD=/usr/local/lib/libjemalloc.so.2 \
    MALLOC_CONF=background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:1 \
    PORT=3000 \
    HOST=0.0.0.0
WORKDIR /app
# Owned by root (COPY's default), so the service can read but not change them.
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
# dist/src: the service; dist/emulator: the emulator it stands up when no credentials are set.
COPY --from=build /app/dist ./dist
COPY --from=build /app/public ./public
USER node
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# As npm start runs it: a young generation of 2 MB semi-spaces (docs/performance.md: less memory and less CPU).
CMD ["node", "--max-semi-space-size=2", "dist/src/server.js"]
