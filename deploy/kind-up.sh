#!/usr/bin/env bash
# kind-up.sh: a 3-node kind cluster ("gingham") with Gingham as its CNI, two pods on the two
# workers, a ping between them, and each node's BGP status and routes.
#
#   deploy/kind-up.sh        (from anywhere; run it again to rebuild and roll out a new image)
#   deploy/kind-down.sh      removes the cluster
#
# Needs docker (with a running daemon and BuildKit), kind and kubectl. Every kubectl call names
# the kind-gingham context, so another cluster in your kubeconfig is never touched.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cluster=gingham
context="kind-$cluster"
image=gingham:dev
selector=k8s-app=gingham

say() { printf '\n=== %s\n' "$*"; }
die() { printf 'kind-up.sh: %s\n' "$*" >&2; exit 1; }
trap 'printf "kind-up.sh: failed (line %s): %s\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

kc() { kubectl --context "$context" "$@"; }

check_prerequisites() {
    local missing=()
    command -v docker >/dev/null 2>&1 ||
        missing+=("docker: install Docker Engine, https://docs.docker.com/engine/install/ (Debian: apt-get install docker.io docker-buildx)")
    command -v kind >/dev/null 2>&1 ||
        missing+=("kind: download a release binary from https://github.com/kubernetes-sigs/kind/releases into your PATH (chmod +x), or: go install sigs.k8s.io/kind@latest")
    command -v kubectl >/dev/null 2>&1 ||
        missing+=("kubectl: see https://kubernetes.io/docs/tasks/tools/ (a release binary from https://dl.k8s.io, or the pkgs.k8s.io apt repository)")
    if ((${#missing[@]})); then
        printf 'kind-up.sh: missing from PATH:\n' >&2
        printf '  - %s\n' "${missing[@]}" >&2
        exit 1
    fi
    local out
    if ! out=$(docker info 2>&1 >/dev/null); then
        printf "kind-up.sh: 'docker info' fails, so the Docker daemon is not reachable:\n%s\n" "$out" >&2
        die "start it (systemctl start docker) or get access to it (root, or a user in the docker group)"
    fi
    if ! docker buildx version >/dev/null 2>&1; then
        die "docker has no BuildKit ('docker buildx version' fails); deploy/Dockerfile needs it: install the buildx plugin (Debian: apt-get install docker-buildx; Docker's repository: docker-buildx-plugin)"
    fi
}

check_prerequisites

# Not `kind get clusters | grep -q`: with pipefail, grep quitting early can fail the pipe.
clusters=$(kind get clusters 2>/dev/null)
if grep -qx "$cluster" <<<"$clusters"; then
    say "kind cluster '$cluster' exists; reusing it"
else
    say "Creating kind cluster '$cluster' (1 control plane, 2 workers, no default CNI)"
    kind create cluster --name "$cluster" --config "$here/kind-config.yaml"
fi

say "Building $image from $root"
DOCKER_BUILDKIT=1 docker build -t "$image" -f "$here/Dockerfile" "$root"

say "Loading $image into the cluster's nodes"
kind load docker-image "$image" --name "$cluster"

# A DaemonSet that already exists keeps running the old image under the same tag: note it now,
# restart it after the apply.
existed=false
if kc -n kube-system get ds/gingham >/dev/null 2>&1; then
    existed=true
fi

say "Applying deploy/gingham.yaml (CRDs, RBAC, the CNI config, the DaemonSet)"
kc apply -f "$here/gingham.yaml"
kc wait --for=condition=Established --timeout=60s \
    crd/ippools.gingham.io crd/ipamblocks.gingham.io crd/blockaffinities.gingham.io \
    crd/ipamhandles.gingham.io crd/ipamconfigs.gingham.io crd/workloadendpoints.gingham.io
if [[ $existed == true ]]; then
    kc -n kube-system rollout restart ds/gingham
fi

say "Waiting for the DaemonSet and the nodes"
if ! kc -n kube-system rollout status ds/gingham --timeout=300s; then
    kc -n kube-system get pods -l "$selector" -o wide >&2 || true
    kc -n kube-system logs -l "$selector" -c gingham-agent --prefix --tail=20 >&2 || true
    die "the gingham DaemonSet did not become ready; the agents' last log lines are above"
fi
kc wait --for=condition=Ready nodes --all --timeout=300s

say "Creating pod-a on $cluster-worker and pod-b on $cluster-worker2"
kc apply -f - <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: pod-a
  labels: {app: gingham-demo}
spec:
  nodeName: $cluster-worker
  terminationGracePeriodSeconds: 0
  containers:
    - name: busybox
      image: busybox:1.36
      command: ["sleep", "3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: pod-b
  labels: {app: gingham-demo}
spec:
  nodeName: $cluster-worker2
  terminationGracePeriodSeconds: 0
  containers:
    - name: busybox
      image: busybox:1.36
      command: ["sleep", "3600"]
EOF
kc wait --for=condition=Ready pod/pod-a pod/pod-b --timeout=180s
kc get pods -l app=gingham-demo -o wide

ip_a=$(kc get pod pod-a -o jsonpath='{.status.podIP}')
ip_b=$(kc get pod pod-b -o jsonpath='{.status.podIP}')
[[ -n $ip_b ]] || die "pod-b has no IP"

say "ping from pod-a ($ip_a, on $cluster-worker) to pod-b ($ip_b, on $cluster-worker2)"
ping_ok=true
kc exec pod-a -- ping -c 3 "$ip_b" || ping_ok=false

kc -n kube-system get pods -l "$selector" -o wide
# Inside the loop, kubectl reads /dev/null, not the pod list the loop reads.
while read -r pod node; do
    node_ip=$(kc get node "$node" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}' </dev/null)
    say "$node ($node_ip), pod $pod: routectl show"
    kc -n kube-system exec "$pod" -c gingham-agent -- routectl show </dev/null || true
    printf -- "--- %s: ip route | grep -E 'bird|blackhole|cali'\n" "$node"
    kc -n kube-system exec "$pod" -c gingham-agent -- \
        sh -c "ip route | grep -E 'bird|blackhole|cali' || true" </dev/null || true
done < <(kc -n kube-system get pods -l "$selector" --no-headers \
    -o custom-columns=POD:.metadata.name,NODE:.spec.nodeName | sort -k2)

if [[ $ping_ok != true ]]; then
    die "pod-a could not ping pod-b ($ip_b); see the routes above"
fi
say "Done. kubectl --context $context -n kube-system exec ds/gingham -- routectl show; deploy/kind-down.sh removes the cluster."
