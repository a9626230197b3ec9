#!/bin/bash
# Regenerates the BIRD 2 / GoBGP captures under bgp/tests/data/capture/ (run as root).
#
# For each case, BIRD runs in one network namespace and gobgpd in another, joined by a veth
# (10.99.N.1/30 and .2/30). tcpdump records the session inside BIRD's namespace; each side
# announces prefixes with communities and MED, GoBGP then withdraws one, and BIRD is disabled with
# an RFC 8203 shutdown message (a Cease). extract.py cuts the messages into hex files.
#
# Cases: ibgp (AS 64512 both sides), ebgp-as4 (4200000001 <-> 4200000002, 4-octet AS session),
# ebgp-as2 (65001 <-> 65002 with BIRD as an old 2-octet speaker, so GoBGP must send the
# 4-octet AS of its third route as AS_TRANS + AS4_PATH).
# Everything made here is named after this shell's pid and removed on exit, also on failure.
set -euo pipefail
DATA=$(cd "$(dirname "$0")" && pwd)
ID=$$
N=$(( ID % 200 + 20 ))
NA=gc${ID}a NB=gc${ID}b
TMP=$(mktemp -d /tmp/gingham-capture.XXXXXX)
A=10.99.$N.1 B=10.99.$N.2

cleanup() {
  set +e
  for p in "$TMP"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; done
  sleep 0.5
  ip netns del "$NA" 2>/dev/null
  ip netns del "$NB" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT

ip netns add "$NA"
ip netns add "$NB"
ip link add "$NA" type veth peer name "$NB"
ip link set "$NA" netns "$NA"
ip link set "$NB" netns "$NB"
ip -n "$NA" addr add "$A/30" dev "$NA"
ip -n "$NB" addr add "$B/30" dev "$NB"
for ns in "$NA" "$NB"; do ip -n "$ns" link set lo up; ip -n "$ns" link set "$ns" up; done

wait_for() { # seconds command...
  local t=$1; shift
  for _ in $(seq $((t * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out: $*" >&2; return 1
}

run_case() { # name bird_as gobgp_as bird_extra [gobgp AS as BIRD knows it]
  local name=$1 bas=$2 gas=$3 extra=$4 gas_seen=${5:-$3}
  cat > "$TMP/bird.conf" <<CONF
router id $A;
protocol device {}
protocol static s4 {
  ipv4;
  route 192.168.10.0/24 blackhole;
  route 192.168.20.64/26 blackhole;
}
protocol bgp peer {
  local $A as $bas;
  neighbor $B as $gas_seen;
  direct;
  hold time 90;
  $extra
  ipv4 {
    import all;
    export filter { bgp_community.add((64512,100)); bgp_community.add((65535,65281)); bgp_med = 50; accept; };
  };
}
CONF
  cat > "$TMP/gobgp.toml" <<CONF
[global.config]
  as = $gas
  router-id = "$B"
  local-address-list = ["$B"]
[[neighbors]]
  [neighbors.config]
    neighbor-address = "$A"
    peer-as = $bas
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
CONF
  ip netns exec "$NA" tcpdump -i "$NA" -U -s 0 -w "$TMP/$name.pcap" 'tcp port 179' 2>/dev/null &
  echo $! > "$TMP/tcpdump.pid"
  sleep 1
  ip netns exec "$NB" gobgpd -f "$TMP/gobgp.toml" -t toml --api-hosts 127.0.0.1:50051 > "$TMP/gobgpd.log" 2>&1 &
  echo $! > "$TMP/gobgpd.pid"
  local gobgp="ip netns exec $NB gobgp -u 127.0.0.1 -p 50051"
  wait_for 20 $gobgp global
  $gobgp global rib add -a ipv4 192.168.30.0/24 community 64512:200 med 10
  $gobgp global rib add -a ipv4 192.168.40.128/26 origin incomplete
  # A route whose AS_PATH already holds a 4-octet AS: on the ebgp-as2 session GoBGP has to send
  # it as AS_TRANS in AS_PATH plus AS4_PATH.
  $gobgp global rib add -a ipv4 192.168.50.0/24 aspath 4200000009 community 64512:300
  ip netns exec "$NA" bird -c "$TMP/bird.conf" -s "$TMP/bird.ctl" -P "$TMP/bird.pid"
  wait_for 30 sh -c "ip netns exec $NA birdc -s $TMP/bird.ctl show protocols peer | grep -q Established" || { ip netns exec "$NA" birdc -s "$TMP/bird.ctl" show protocols all peer; tail -5 "$TMP/gobgpd.log"; return 1; }
  sleep 3
  $gobgp global rib del -a ipv4 192.168.40.128/26
  sleep 2
  ip netns exec "$NA" birdc -s "$TMP/bird.ctl" disable peer "\"capture done\"" > /dev/null
  sleep 2
  kill -INT "$(cat "$TMP/tcpdump.pid")"; sleep 0.5
  kill "$(cat "$TMP/gobgpd.pid")" "$(cat "$TMP/bird.pid")" 2>/dev/null || true
  rm -f "$TMP"/*.pid
  sleep 1
  rm -rf "$DATA/capture/$name"
  python3 "$DATA/extract.py" "$TMP/$name.pcap" "$DATA/capture/$name" bird="$A" gobgp="$B"
  echo "$name: $(ls "$DATA/capture/$name" | tr '\n' ' ')"
}

run_case ibgp 64512 64512 ""
run_case ebgp-as4 4200000001 4200000002 ""
# BIRD as an old 2-octet speaker ("enable as4 off"): a 2-octet AS session (RFC 6793 §4.2.2).
run_case ebgp-as2 65001 65002 "enable as4 off;"
