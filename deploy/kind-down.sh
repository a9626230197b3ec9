#!/usr/bin/env bash
# kind-down.sh: deletes the kind cluster "gingham" made by kind-up.sh (its node containers, and
# with them every route, pod and CNI file Gingham put there). The gingham:dev image stays in
# Docker; `docker image rm gingham:dev` removes it.
set -euo pipefail

cluster=gingham

die() { printf 'kind-down.sh: %s\n' "$*" >&2; exit 1; }

check_prerequisites() {
    local missing=()
    command -v docker >/dev/null 2>&1 ||
        missing+=("docker: install Docker Engine, https://docs.docker.com/engine/install/ (Debian: apt-get install docker.io)")
    command -v kind >/dev/null 2>&1 ||
        missing+=("kind: download a release binary from https://github.com/kubernetes-sigs/kind/releases into your PATH (chmod +x), or: go install sigs.k8s.io/kind@latest")
    if ((${#missing[@]})); then
        printf 'kind-down.sh: missing from PATH:\n' >&2
        printf '  - %s\n' "${missing[@]}" >&2
        exit 1
    fi
    local out
    if ! out=$(docker info 2>&1 >/dev/null); then
        printf "kind-down.sh: 'docker info' fails, so the Docker daemon is not reachable:\n%s\n" "$out" >&2
        die "start it (systemctl start docker) or get access to it (root, or a user in the docker group)"
    fi
}

check_prerequisites
clusters=$(kind get clusters 2>/dev/null)
if grep -qx "$cluster" <<<"$clusters"; then
    kind delete cluster --name "$cluster"
else
    echo "kind-down.sh: no kind cluster named '$cluster'; nothing to delete"
fi
