# syntax=docker/dockerfile:1
# mamba-serve container image: built with the CUDA backend on, run as a numeric non-root user.
#
#   docker build -t mamba-serve:0.1.0 .
#   docker run --gpus all -v /srv/models:/models:ro -p 50051:50051 -p 8080:8080 -p 8000:8000 mamba-serve:0.1.0
#   docker run -p 50051:50051 mamba-serve:0.1.0 --model=synthetic:130m --backend=cpu   # no GPU
#
# Models are mounted at /models (an HF checkpoint folder: config.json, model.safetensors,
# tokenizer.json); the default arguments below serve /models/mamba-130m-hf. docs/deploy.md has
# the details, Kubernetes manifests and the session-affinity proxy.

# The build and runtime images must be the same CUDA release: the runtime image supplies the CUDA
# libraries (cuBLAS, ...) that the build linked against; the driver comes from the host.
ARG CUDA_VERSION=13.0.1
ARG UBUNTU_VERSION=24.04

FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu${UBUNTU_VERSION} AS build
# A100 and H100; a narrower list builds faster, e.g. --build-arg CUDA_ARCHITECTURES=90a.
ARG CUDA_ARCHITECTURES="80;90a"
# Compiling the CUDA kernels takes a few GB per job: lower this on small builders (0 = all cores).
ARG BUILD_JOBS=0
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src

# Packages come from the same script a developer runs, so the image and a checkout agree on
# versions. Copied alone first so that source edits do not invalidate this layer.
COPY scripts/setup.sh scripts/setup.sh
RUN MAMBA_SETUP_NO_BUILD=1 scripts/setup.sh && rm -rf /var/lib/apt/lists/*

COPY . .
RUN --mount=type=cache,target=/root/.cache/ccache \
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DMAMBA_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES}" \
      -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache \
    && jobs="${BUILD_JOBS}" && if [ "$jobs" = 0 ]; then jobs="$(nproc)"; fi \
    && cmake --build build -j "$jobs" --target mamba-serve mamba-client

# Gather the binaries and every shared library they load, except the C runtime (the runtime
# image has the same Ubuntu release) and CUDA (the runtime image has the same CUDA release;
# libcuda itself is the host driver's and is injected by the container toolkit).
RUN mkdir -p /out/bin /out/lib \
    && cp build/bin/mamba-serve build/bin/mamba-client /out/bin/ \
    && ldd /out/bin/mamba-serve /out/bin/mamba-client \
       | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u \
       | grep -v '^/usr/local/cuda' \
       | grep -Ev '/(libc|libm|libdl|libpthread|librt|libgcc_s|libstdc\+\+)\.so|/ld-linux' \
       | xargs -r cp -L -t /out/lib/ \
    && strip --strip-unneeded /out/bin/* /out/lib/*

FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu${UBUNTU_VERSION} AS runtime
LABEL org.opencontainers.image.title="mamba-serve" \
      org.opencontainers.image.description="gRPC server for Mamba language models"

COPY --from=build /out/lib/ /opt/mamba-serve/lib/
COPY --from=build /out/bin/ /usr/local/bin/
# The copied libraries go on the loader's path; the build fails here, not at run time, if
# anything other than the host's libcuda is still unresolved.
RUN echo /opt/mamba-serve/lib > /etc/ld.so.conf.d/mamba-serve.conf && ldconfig \
    && ! ldd /usr/local/bin/mamba-serve /usr/local/bin/mamba-client \
         | grep 'not found' | grep -v 'libcuda\.so' \
    && groupadd --system --gid 10001 mamba \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
         --shell /usr/sbin/nologin mamba \
    && mkdir -p /models

# The user has no home; the CUDA JIT cache (used only on GPUs the build did not target) goes
# to /tmp, the one writable place when the root filesystem is read-only.
ENV CUDA_CACHE_PATH=/tmp/cuda-cache
# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 50051 8080 8000

# Loading a large checkpoint and capturing CUDA graphs takes a while: failures only count after
# the start period. The health check asks the overall ("") service over gRPC.
HEALTHCHECK --start-period=10m --interval=30s --timeout=5s --retries=3 \
  CMD ["mamba-client", "health", "--addr=127.0.0.1:50051"]

ENTRYPOINT ["mamba-serve"]
CMD ["--model=/models/mamba-130m-hf", "--host=0.0.0.0", "--port=50051", "--metrics_port=8080", "--http_port=8000"]
