#!/usr/bin/env bash
# Check each lab scenario with standard tools (dig, curl, openssl s_client), without regcheck.
# Usage: tests/lab/verify.sh [SCENARIO...]   (root; all scenarios when none given)
# Prints one line per check and "N passed, N failed" at the end.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
LAB="python3 $HERE/lab.py"
pass=0; fail=0
ID="v$$"

ok()   { echo "  ok   $*"; pass=$((pass+1)); }
bad()  { echo "  FAIL $*"; fail=$((fail+1)); }
# expect DESCRIPTION PATTERN -- COMMAND...: run COMMAND in the client namespace, grep its output.
expect() {
  local desc=$1 pat=$2; shift 3
  local out
  out=$(timeout 20 ip netns exec "$CNS" "$@" 2>&1)
  if grep -Eq -- "$pat" <<<"$out"; then ok "$desc"; else bad "$desc: wanted /$pat/, got: $(head -c 600 <<<"$out")"; fi
}
up() {
  local info
  if ! info=$($LAB up "$1" --id "$ID"); then bad "up $1"; return 1; fi
  CNS=$(python3 -c 'import json,sys;print(json.load(sys.stdin)["clientNs"])' <<<"$info")
  CA=$(python3 -c 'import json,sys;print(json.load(sys.stdin)["caFile"])' <<<"$info")
  LAYER=$(python3 -c 'import json,sys;print(json.load(sys.stdin)["imageDigests"]["layer"])' <<<"$info")
  echo "== $1 (client ns $CNS)"
}
down() { $LAB down --id "$ID"; }
trap down EXIT

R=labreg.azurecr.io
D=labreg.eastus.data.azurecr.io
MT='Accept:application/vnd.docker.distribution.manifest.v2+json'
curl_code() { echo curl -sS -o /dev/null -w '%{http_code}' --max-time 3 --cacert "$CA" "$@"; }

run_scenario() {
  case $1 in
  healthy-public)
    expect "public CNAME chain to 203.0.113.10" '^203\.0\.113\.10$' -- dig +short $R
    expect "no privatelink in public chain" '^eus-acr-fe' -- dig +short $R
    expect "/v2/ 200" '^200$' -- $(curl_code https://$R/v2/)
    expect "manifest 200" '^200$' -- $(curl_code -H "$MT" https://$R/v2/lab/hello/manifests/1.0)
    expect "blob 307 to data endpoint" "Location: https://$D/" -- curl -sS -I --cacert "$CA" https://$R/v2/lab/hello/blobs/$LAYER
    expect "blob via data endpoint" 'hello.txt' -- sh -c "curl -sSL --cacert $CA https://$R/v2/lab/hello/blobs/$LAYER | tar tz"
    expect "missing image 404 MANIFEST_UNKNOWN" 'MANIFEST_UNKNOWN' -- curl -sS --cacert "$CA" -H "$MT" https://$R/v2/lab/nope/manifests/1.0
    ;;
  healthy-private)
    expect "login via privatelink to 10.2.0.10" 'privatelink.azurecr.io.*10\.2\.0\.10' -- sh -c "dig +short $R | tr '\n' ' '"
    expect "data via privatelink to 10.2.0.11" 'privatelink.azurecr.io.*10\.2\.0\.11' -- sh -c "dig +short $D | tr '\n' ' '"
    expect "/v2/ 200 on private IP" '^200$' -- $(curl_code https://$R/v2/)
    expect "blob via private data endpoint" 'hello.txt' -- sh -c "curl -sSL --cacert $CA https://$R/v2/lab/hello/blobs/$LAYER | tar tz"
    ;;
  healthy-proxy)
    expect "CONNECT through squid" '^200$' -- $(curl_code --proxy http://10.1.0.80:3128 https://$R/v2/)
    ;;
  dns-name-not-found)
    expect "NXDOMAIN" 'status: NXDOMAIN' -- dig nosuchreg.azurecr.io
    ;;
  custom-dns-no-forwarder)
    expect "resolver is dnsmasq" 'nameserver 10\.1\.0\.54' -- cat /etc/resolv.conf
    expect "privatelink CNAME but public A via 10.1.0.54" 'privatelink.*203\.0\.113\.10' -- sh -c "dig +short $R | tr '\n' ' '"
    expect "answered by 10.1.0.54" 'SERVER: 10\.1\.0\.54' -- dig $R
    ;;
  data-endpoint-dns-missing)
    expect "login private" '10\.2\.0\.10' -- dig +short $R
    expect "data endpoint NXDOMAIN" 'status: NXDOMAIN' -- dig $D
    ;;
  dns-server-unreachable)
    expect "DNS timeout" 'timed out|no servers could be reached' -- dig +time=1 +tries=1 $R
    ;;
  login-drop)
    expect "TCP 443 to login times out" 'Connection timed out|Timeout was reached|timed out' -- curl -sS --connect-timeout 2 --cacert "$CA" https://$R/v2/
    expect "data endpoint still fine" '^404$' -- $(curl_code https://$D/)
    ;;
  data-drop)
    expect "login fine" '^200$' -- $(curl_code https://$R/v2/)
    expect "blob redirect target times out" 'Connection timed out|Timeout was reached|timed out' -- curl -sSL --connect-timeout 2 --cacert "$CA" https://$R/v2/lab/hello/blobs/$LAYER
    ;;
  sni-reset)
    expect "reset after ClientHello" 'reset by peer|SSL_ERROR_SYSCALL|errno=104' -- curl -sS --max-time 3 --cacert "$CA" https://$R/v2/
    expect "openssl sees reset" 'errno=104|reset|no peer certificate' -- sh -c "openssl s_client -connect 203.0.113.10:443 -servername $R </dev/null"
    expect "data endpoint not filtered" '^404$' -- $(curl_code https://$D/)
    ;;
  tls-interception)
    expect "issuer is the inspection CA" 'Contoso Inspection CA' -- sh -c "openssl s_client -connect 203.0.113.10:443 -servername $R </dev/null 2>/dev/null | openssl x509 -noout -issuer"
    expect "lab CA does not verify it" 'unable to get local issuer|self.signed|certificate verify failed|unable to verify' -- curl -sS --max-time 3 --cacert "$CA" https://$R/v2/
    ;;
  registry-denied-ip)
    expect "403 DENIED with client IP" "client with IP '10\.1\.0\.100' is not allowed access" -- curl -sS --cacert "$CA" https://$R/v2/
    expect "status 403" '^403$' -- $(curl_code https://$R/v2/)
    ;;
  headers-timeout)
    expect "TLS ok, no headers" 'Operation timed out after .* with 0 bytes received' -- curl -sS --max-time 2 --cacert "$CA" https://$R/v2/
    ;;
  proxy-denied)
    expect "CONNECT 403" 'CONNECT tunnel failed, response 403|403' -- curl -sS --max-time 3 --proxy http://10.1.0.80:3128 --cacert "$CA" https://$R/v2/
    ;;
  proxy-eof)
    expect "proxy closes" 'Proxy CONNECT aborted|Connection reset|Empty reply|Recv failure|closed' -- curl -sS --max-time 3 --proxy http://10.1.0.81:3128 --cacert "$CA" https://$R/v2/
    ;;
  proxy-auth)
    expect "CONNECT 407" 'response 407' -- curl -sS --max-time 3 --proxy http://10.1.0.80:3128 --cacert "$CA" https://$R/v2/
    expect "with credentials 200" '^200$' -- $(curl_code --proxy http://proxyuser:proxypass@10.1.0.80:3128 https://$R/v2/)
    ;;
  proxy-bypass-missing)
    expect "direct to private IP works" '^200$' -- $(curl_code https://$R/v2/)
    expect "proxy cannot reach private endpoint (5xx)" 'response 50[234]' -- curl -sS --max-time 4 --proxy http://10.1.0.80:3128 --cacert "$CA" https://$R/v2/
    ;;
  host-unreachable)
    expect "resolves to stale 10.2.0.99" '10\.2\.0\.99' -- dig +short $R
    expect "no route to host" 'No route to host|Couldn.t connect' -- curl -sS --max-time 3 --cacert "$CA" https://$R/v2/
    ;;
  throttled)
    expect "429" '^429$' -- $(curl_code https://$R/v2/)
    ;;
  registry-auth)
    expect "401 Basic challenge" 'Www-Authenticate: Basic realm="labreg.azurecr.io"' -- curl -sS -i --cacert "$CA" https://$R/v2/
    expect "wrong password 401" '^401$' -- $(curl_code -u labuser:wrong -H "$MT" https://$R/v2/lab/hello/manifests/1.0)
    expect "right password 200" '^200$' -- $(curl_code -u labuser:labpass -H "$MT" https://$R/v2/lab/hello/manifests/1.0)
    expect "missing image 404" '^404$' -- $(curl_code -u labuser:labpass -H "$MT" https://$R/v2/lab/nope/manifests/1.0)
    ;;
  registry-token)
    expect "401 Bearer challenge" 'Www-Authenticate: Bearer realm="https://labreg.azurecr.io/oauth2/token",service="labreg.azurecr.io"' -- curl -sS -i --cacert "$CA" https://$R/v2/
    expect "token refused without credentials" '^401$' -- $(curl_code "https://$R/oauth2/token?service=$R&scope=repository:lab/hello:pull")
    expect "token refused for wrong password" '^401$' -- $(curl_code -u labuser:wrong "https://$R/oauth2/token?service=$R&scope=repository:lab/hello:pull")
    expect "token + manifest 200" '^200$' -- sh -c "T=\$(curl -sS --cacert $CA -u labuser:labpass 'https://$R/oauth2/token?service=$R&scope=repository:lab/hello:pull' | sed 's/.*\"access_token\": \"\\([^\"]*\\)\".*/\\1/'); curl -sS -o /dev/null -w '%{http_code}' --cacert $CA -H 'Authorization: Bearer '\$T -H '$MT' https://$R/v2/lab/hello/manifests/1.0"
    ;;
  mtu-black-hole)
    expect "handshake with the large chain stalls" 'timed out|Timeout was reached' -- curl -sS --max-time 3 --cacert "$CA" https://$R/v2/
    expect "data endpoint's small handshake completes" '^404$' -- $(curl_code https://$D/)
    ;;
  sni-drop)
    expect "handshake naming the registry stalls" 'timed out|Timeout was reached' -- curl -sS --max-time 3 --cacert "$CA" https://$R/v2/
    expect "data endpoint not filtered" '^404$' -- $(curl_code https://$D/)
    ;;
  ipv6-path-broken)
    expect "A and AAAA" '203\.0\.113\.10 .*fd00:2::10' -- sh -c "{ dig +short A $R; dig +short AAAA $R; } | tr '\\n' ' '"
    expect "IPv4 works" '^200$' -- $(curl_code -4 https://$R/v2/)
    expect "IPv6 times out" 'timed out|Timeout was reached' -- curl -6 -sS --connect-timeout 2 --cacert "$CA" https://$R/v2/
    ;;
  ipv6-only-no-aaaa)
    expect "resolver is IPv6" 'nameserver fd00:2::53' -- cat /etc/resolv.conf
    expect "no AAAA record (the chain ends in A only)" '^0$' -- sh -c "dig +short AAAA $R | grep -c :"
    expect "no IPv4 route" 'unreachable|Couldn.t connect|Failed to connect' -- curl -sS --max-time 3 --cacert "$CA" https://203.0.113.10/v2/
    ;;
  ipv6-only)
    expect "AAAA record" 'fd00:2::10' -- dig +short AAAA $R
    expect "/v2/ 200 over IPv6" '^200$' -- $(curl_code -6 https://$R/v2/)
    ;;
  egress-fqdn-firewall)
    expect "management.azure.com answers (400)" '^400$' -- $(curl_code https://management.azure.com/)
    expect "mcr.microsoft.com answers (200)" '^200$' -- $(curl_code https://mcr.microsoft.com/)
    expect "packages.aks.azure.com reset after ClientHello" 'reset by peer|SSL_ERROR_SYSCALL|errno=104' -- curl -sS --max-time 3 --cacert "$CA" https://packages.aks.azure.com/
    expect "eastus.data.mcr.microsoft.com reset after ClientHello" 'reset by peer|SSL_ERROR_SYSCALL|errno=104' -- curl -sS --max-time 3 --cacert "$CA" https://eastus.data.mcr.microsoft.com/
    expect "registry unaffected" '^200$' -- $(curl_code https://$R/v2/)
    ;;
  *) bad "no checks for $1" ;;
  esac
}

if [ $# -eq 0 ]; then set -- $($LAB list); fi
for s in "$@"; do
  up "$s" || continue
  run_scenario "$s"
  down
done
trap - EXIT
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
