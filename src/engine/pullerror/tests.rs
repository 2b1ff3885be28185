//! Real pull error messages, each with the public issue it was copied from (found with the
//! project's issue search), and the messages the project's test cluster produces.
//! Messages are copied as the issue shows them (including the reporters' redactions such as
//! `<acrname>` or `xxx`); where an issue shows a message cut short, the cut is kept.

use super::*;
use crate::engine::evidence::Role::{DataEndpoint, LoginServer};
use Reason::*;

struct Case {
    source: &'static str,
    message: &'static str,
    reason: Reason,
    host: Option<&'static str>,
    role: Option<Role>,
}

const fn case(
    source: &'static str,
    message: &'static str,
    reason: Reason,
    host: Option<&'static str>,
    role: Option<Role>,
) -> Case {
    Case {
        source,
        message,
        reason,
        host,
        role,
    }
}

const CASES: &[Case] = &[
    // --- platform ---------------------------------------------------------------------------
    // kubewarden/adm-controller#1378 (containerd via kubelet)
    case(
        "kubewarden/adm-controller#1378",
        r#"Failed to pull image "ghcr.io/kubewarden/kubewarden-controller:latest": rpc error: code = NotFound desc = failed to pull and unpack image "ghcr.io/kubewarden/kubewarden-controller:latest": no match for platform in manifest: not found"#,
        ImagePlatformMismatch,
        Some("ghcr.io"),
        Some(LoginServer),
    ),
    // moby/moby#46765 (Docker with the containerd image store)
    case(
        "moby/moby#46765",
        "Error response from daemon: no matching manifest for linux/arm64/v8 in the manifest list entries: no match for platform in manifest: not found",
        ImagePlatformMismatch,
        None,
        None,
    ),
    // python-pillow/Pillow#9440
    case(
        "python-pillow/Pillow#9440",
        "Error response from daemon: no matching manifest for linux/amd64 in the manifest list entries: no match for platform in manifest: not found",
        ImagePlatformMismatch,
        None,
        None,
    ),
    // --- plain HTTP registry ----------------------------------------------------------------
    // enix/kube-image-keeper#60 (containerd via kubelet)
    case(
        "enix/kube-image-keeper#60",
        r#"Failed to pull image "localhost:7439/docker.io/xxxsoftware/xxx-redis:2023.1.2": rpc error: code = Unknown desc = failed to pull and unpack image "localhost:7439/docker.io/xxxsoftware/xxx-redis:2023.1.2": failed to resolve reference "localhost:7439/docker.io/xxxsoftware/xxx-redis:2023.1.2": failed to do request: Head "https://localhost:7439/v2/docker.io/xxxsoftware/xxx-redis/manifests/2023.1.2": http: server gave HTTP response to HTTPS client"#,
        TLSCertificateInvalid,
        Some("localhost:7439"),
        Some(LoginServer),
    ),
    // cri-o/cri-o#5415 (CRI-O through crictl)
    case(
        "cri-o/cri-o#5415",
        r#"FATA[0000] pulling image failed: rpc error: code  = Unknown déc = error pinging local-repo:4000: Get "https://local-repo:4000/v2/": http: server gave HTTP response to HTTPS client"#,
        TLSCertificateInvalid,
        Some("local-repo:4000"),
        Some(LoginServer),
    ),
    // --- proxies ----------------------------------------------------------------------------
    // docker/for-win#7935 (an empty proxy host)
    case(
        "docker/for-win#7935",
        "docker: Error response from daemon: Get https://registry-1.docker.io/v2/: proxyconnect tcp: dial tcp :0: connect: connection refused.",
        ProxyUnreachable,
        Some("registry-1.docker.io"),
        Some(LoginServer),
    ),
    // docker/for-win#9400 (title)
    case(
        "docker/for-win#9400",
        "Error response from daemon: Get https://registry-1.docker.io/v2/: proxyconnect tcp: dial tcp 127.0.0.1:8080: connect: connection refused",
        ProxyUnreachable,
        Some("registry-1.docker.io"),
        Some(LoginServer),
    ),
    // docker-archive-public/docker.kitematic#3573 (old Go: getsockopt)
    case(
        "docker-archive-public/docker.kitematic#3573",
        "(HTTP code 500) server error - Get https://registry-1.docker.io/v2/: proxyconnect tcp: dial tcp 127.0.0.1:3128: getsockopt: connection refused",
        ProxyUnreachable,
        Some("registry-1.docker.io"),
        Some(LoginServer),
    ),
    // docker-archive-public/docker.kitematic#3611 (Go < 1.9 wording)
    case(
        "docker-archive-public/docker.kitematic#3611",
        "Error while pulling image: Get https://index.docker.io/v1/repositories/gitlab/gitlab-ce/images: http: error connecting to proxy http://127.0.0.1:53847: dial tcp 127.0.0.1:53847: getsockopt: connection refused",
        ProxyUnreachable,
        Some("index.docker.io"),
        Some(LoginServer),
    ),
    // moby/moby#48131 (title; an https:// proxy URL for a plain HTTP proxy)
    case(
        "moby/moby#48131",
        r#"Using http(s) proxy always see error: Get "https://registry-1.docker.io/v2/": proxyconnect tcp: EOF"#,
        ProxyConnectEOF,
        Some("registry-1.docker.io"),
        Some(LoginServer),
    ),
    // --- Azure network rules ----------------------------------------------------------------
    // Azure/acr#633 (ACI, Docker daemon; the reporter masked the IP)
    case(
        "Azure/acr#633",
        r#"Failed to pull image "<acrname>.azurecr.io/<imagae-name>:02b6d84d635c3d9ff4182ad1c50d16364695d3d5": rpc error: code Unknown desc Error response from daemon: Head "https://<acrname>.azurecr.io/v2/<image-name>/manifests/02b6d84d635c3d9ff4182ad1c50d16364695d3d5": denied: client with IP 'x.x.x.x' is not allowed access. Refer https://aka.ms/acr/firewall to grant access."#,
        RegistryDeniedClientIP,
        Some("<acrname>.azurecr.io"),
        Some(LoginServer),
    ),
    // docker/build-push-action#1214 (JSON body with \u0027, wrapped as the issue shows it)
    case(
        "docker/build-push-action#1214",
        "error response from daemon: Get \"https://.azurecr.io/v2/\": denied: {\"errors\":[{\"code\":\"DENIED\",\"message\":\"client with IP \\u0027172.214.169.102\\u0027 is not allowed access. Refer\nhttps://aka.ms/acr/firewall\nto grant access.\"}]}*",
        RegistryDeniedClientIP,
        Some(".azurecr.io"),
        Some(LoginServer),
    ),
    // --- registry authentication and authorisation -----------------------------------------
    // kubernetes/minikube#9161 (kubelet log, Docker daemon)
    case(
        "kubernetes/minikube#9161",
        r#"E0902 17:08:30.669241    5467 remote_image.go:113] PullImage "nexus3:8083/com.panov/ci-cd:0.0.1-SNAPSHOT" from image service failed: rpc error: code = Unknown desc = Error response from daemon: Get http://nexus3:8083/v2/com.panov/ci-cd/manifests/0.0.1-SNAPSHOT: no basic auth credentials"#,
        AuthenticationFailed,
        Some("nexus3:8083"),
        Some(LoginServer),
    ),
    // docker/for-mac#3381 (kubectl describe event row on AKS)
    case(
        "docker/for-mac#3381",
        r#"  Warning  Failed     7m40s (x4 over 9m8s)   kubelet, aks-agentpool-38663868-1  Failed to pull image "nexus3.abcde.org:10004/abcde-qwerty-fe:2.2.22": rpc error: code = Unknown desc = Error response from daemon: Get https://nexus3.abcde.org:10004/v2/abcde-qwerty-fe/manifests/2.2.22: no basic auth credentials"#,
        AuthenticationFailed,
        Some("nexus3.abcde.org:10004"),
        Some(LoginServer),
    ),
    // kubernetes/kubernetes#110675 (containerd: no URL, the host comes from the image)
    case(
        "kubernetes/kubernetes#110675",
        r#"Failed to pull image "registry.app.xxx.net/XXXXX/partsgo42:GitActionsNew-2e7e78f7bb157128f1853b0dc06bf7ccd13156d7": rpc error: code = Unknown desc = failed to pull and unpack image "registry.app.xxx.net/spm2fog/partsgo42:GitActionsNew-2e7e78f7bb157128f1853b0dc06bf7ccd13156d7": failed to resolve reference "registry.app.xxx.net/spm2fog/partsgo42:GitActionsNew-2e7e78f7bb157128f1853b0dc06bf7ccd13156d7": pulling from host registry.app.xxx.net failed with status code [manifests GitActionsNew-2e7e78f7bb157128f1853b0dc06bf7ccd13156d7]: 401 Unauthorized"#,
        AuthenticationFailed,
        Some("registry.app.xxx.net"),
        Some(LoginServer),
    ),
    // gitpod-io/gitpod#14837 (token 401)
    case(
        "gitpod-io/gitpod#14837",
        r#""proxy.replicated.com/proxy/gitpod/busybox:1": failed to resolve reference "proxy.replicated.com/proxy/gitpod/busybox:1": failed to authorize: failed to fetch oauth token: unexpected status: 401 Unauthorized"#,
        AuthenticationFailed,
        Some("proxy.replicated.com"),
        Some(LoginServer),
    ),
    // Azure/acr#124 (Docker daemon, App Service)
    case(
        "Azure/acr#124",
        "2018-08-27 19:58:27.234 ERROR - docker pull returned STDERR>> Error response from daemon: Get https://mitrust.azurecr.io/v2/devlocalnodejs-mitrust/manifests/devlocalnodejs-20180827193841815-5c8e9c3: unauthorized: authentication required",
        AuthenticationFailed,
        Some("mitrust.azurecr.io"),
        Some(LoginServer),
    ),
    // nloui/paperless-mcp#10 (anonymous token 403)
    case(
        "nloui/paperless-mcp#10",
        r#"Failed to pull image "ghcr.io/nloui/paperless-mcp:latest": failed to pull and unpack image "ghcr.io/nloui/paperless-mcp:latest": failed to resolve reference "ghcr.io/nloui/paperless-mcp:latest": failed to authorize: failed to fetch anonymous token: unexpected status from GET request to https://ghcr.io/token?scope=repository%3Anloui%2Fpaperless-mcp%3Apull&service=ghcr.io: 403 Forbidden"#,
        RegistryForbidden,
        Some("ghcr.io"),
        Some(LoginServer),
    ),
    // Azure/container-service-for-azure-china#62 (an nginx 403 page)
    case(
        "Azure/container-service-for-azure-china#62",
        r#"Error response from daemon: error parsing HTTP 403 response body: invalid character '<' looking for beginning of value: "<html>\r\n<head><title>403 Forbidden</title></head>\r\n<body bgcolor=\"white\">\r\n<center><h1>403 Forbidden</h1></center>\r\n<hr><center>nginx/1.14.0 (Ubuntu)</center>\r\n</body>\r\n</html>\r\n""#,
        RegistryForbidden,
        None,
        None,
    ),
    // kubernetes/minikube#20613 (denied: requested access)
    case(
        "kubernetes/minikube#20613",
        r#"Failed to pull image "suedostcargo-web": Error response from daemon: pull access denied for suedostcargo-web, repository does not exist or may require 'docker login': denied: requested access to the resource is denied"#,
        AuthorizationFailed,
        Some("docker.io"),
        Some(LoginServer),
    ),
    // --- not found ----------------------------------------------------------------------------
    // sympozium-ai/sympozium#5 (containerd NotFound)
    case(
        "sympozium-ai/sympozium#5",
        r#"Failed to pull image "ghcr.io/alexsjones/sympozium/apiserver:v0.0.29": rpc error: code = NotFound desc = failed to pull and unpack image "ghcr.io/alexsjones/sympozium/apiserver:v0.0.29": failed to resolve reference "ghcr.io/alexsjones/sympozium/apiserver:v0.0.29": ghcr.io/alexsjones/sympozium/apiserver:v0.0.29: not found"#,
        ImageNotFound,
        Some("ghcr.io"),
        Some(LoginServer),
    ),
    // ivangabriele/dockfish#13 (Docker)
    case(
        "ivangabriele/dockfish#13",
        "Error response from daemon: manifest for ivangabriele/dockfish:latest not found: manifest unknown: manifest unknown",
        ImageNotFound,
        None,
        None,
    ),
    // --- throttling ---------------------------------------------------------------------------
    // namespacelabs/foundation#846 (containerd; cut short in the issue)
    case(
        "namespacelabs/foundation#846",
        r#"Failed to pull image "index.docker.io/jaegertracing/all-in-one@sha256:8d0bff43db3ce5c528cb6f957520511d263d7cceee012696e4afdc9087919bb9": rpc error: code = Unknown desc = failed to pull and unpack image "docker.io/jaegertracing/all-in-one@sha256:8d0bff43db3ce5c528cb6f957520511d263d7cceee012696e4afdc9087919bb9": failed to copy: httpReadSeeker: failed open: unexpected status code https://registry-1.docker.io/v2/jaegertracing/all-in-one/manifests/sha256:8d0bff43db3ce5c528cb6f957520511d263d7cceee012696e4afdc9087919bb9: 429 Too Many Requests - Server message: toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upg"#,
        Throttled,
        Some("registry-1.docker.io"),
        Some(LoginServer),
    ),
    // docker/hub-feedback#2429 (the documentation link is not the failed host)
    case(
        "docker/hub-feedback#2429",
        "Error: ERROR: Error response from daemon: toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit",
        Throttled,
        None,
        None,
    ),
    // --- server errors ------------------------------------------------------------------------
    // Azure/open-service-broker-azure#700 (ACR 500 through kubelet and Docker)
    case(
        "Azure/open-service-broker-azure#700",
        r#"Failed to pull image "osbapublicacr.azurecr.io/microsoft/azure-service-broker:v1.6.0": rpc error: code = Unknown desc = Error response from daemon: Get https://osbapublicacr.azurecr.io/v2/microsoft/azure-service-broker/manifests/v1.6.0: received unexpected HTTP status: 500 Internal Server Error"#,
        RegistryServerError,
        Some("osbapublicacr.azurecr.io"),
        Some(LoginServer),
    ),
    // docker/hub-feedback#1548
    case(
        "docker/hub-feedback#1548",
        "docker: Error response from daemon: Get https://registry-1.docker.io/v2/wurstmeister/zookeeper/manifests/latest: received unexpected HTTP status: 503 Service Unavailable.",
        RegistryServerError,
        Some("registry-1.docker.io"),
        Some(LoginServer),
    ),
    // godarch/darch#24 (containerd's token fetch)
    case(
        "godarch/darch#24",
        r#"darch: failed to resolve reference "docker.io/godarch/arch:latest": failed to fetch anonymous token: unexpected status: 503 Service Unavailable"#,
        RegistryServerError,
        Some("docker.io"),
        Some(LoginServer),
    ),
    // --- DNS ------------------------------------------------------------------------------------
    // istio/community#25 (kubelet, Docker)
    case(
        "istio/community#25",
        r#"Failed to pull image "istio/examples-bookinfo-reviews-v2:0.2.8": rpc error: code = Unknown desc = Error response from daemon: Get https://registry-1.docker.io/v2/: dial tcp: lookup registry-1.docker.io on 192.168.64.1:53: server misbehaving"#,
        DNSServerFailure,
        Some("registry-1.docker.io"),
        Some(LoginServer),
    ),
    // docker/for-mac#2152
    case(
        "docker/for-mac#2152",
        "Error response from daemon: Get https://registry-1.docker.io/v2/: dial tcp: lookup registry-1.docker.io on 192.168.65.1:53: read udp 192.168.65.2:45941->192.168.65.1:53: i/o timeout",
        DNSServerUnreachable,
        Some("registry-1.docker.io"),
        Some(LoginServer),
    ),
    // docker-archive-public/docker.kitematic#1635 (IPv6 nameserver refuses)
    case(
        "docker-archive-public/docker.kitematic#1635",
        "Error while pulling image: Get https://index.docker.io/v1/repositories/kitematic/hello-world-nginx/images: dial tcp: lookup index.docker.io on [::1]:53: read udp [::1]:54528->[::1]:53: read: connection refused",
        DNSServerUnreachable,
        Some("index.docker.io"),
        Some(LoginServer),
    ),
    // docker-archive-public/docker.kitematic#1577
    case(
        "docker-archive-public/docker.kitematic#1577",
        "Error pulling image (latest) from docker.io/library/ubuntu-upstart, Failed to download json: Get https://registry-1.docker.io/v1/images/3c42a74804f79e44845044dad95183b4e4f73207b97f7cfb0fe9305b3c33d27a/json: dial tcp: lookup registry-1.docker.io on 8.8.8.8:53: no such host",
        DNSNameNotFound,
        Some("registry-1.docker.io"),
        Some(LoginServer),
    ),
    // docker-library/mysql#1116 (a blob redirect target that does not resolve)
    case(
        "docker-library/mysql#1116",
        r#"failed to copy: httpReadSeeker: failed open: failed to do request: Get "https://docker-images-prod.6aa30f8b08e16409b46e0173d6de2f56.r2.cloudflarestorage.com/registry-v2/docker/registry/v2/blobs/sha256/62/62efe2b176c92f37277da6309751ea5c05404dae5248eb1ae91c01e5a9bffb71/data?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=f1baa2dd9b876aeb89efebbfc9e5d5f4%2F20250718%2Fauto%2Fs3%2Faws4_request&X-Amz-Date=20250718T122819Z&X-Amz-Expires=1200&X-Amz-SignedHeaders=host&X-Amz-Signature=680c6cc3360c91f0597342eaba7c60402c3a9aebc3b992acd373f8fbb7a49acb": dialing docker-images-prod.6aa30f8b08e16409b46e0173d6de2f56.r2.cloudflarestorage.com:443 container via direct connection because static system has no HTTPS proxy: connecting to docker-images-prod.6aa30f8b08e16409b46e0173d6de2f56.r2.cloudflarestorage.com:443: dial tcp: lookup docker-images-prod.6aa30f8b08e16409b46e0173d6de2f56.r2.cloudflarestorage.com: no such host "#,
        DNSNameNotFound,
        Some("docker-images-prod.6aa30f8b08e16409b46e0173d6de2f56.r2.cloudflarestorage.com"),
        Some(DataEndpoint),
    ),
    // docker/hub-feedback#2376 (image configuration blob, Docker's newer dialer)
    case(
        "docker/hub-feedback#2376",
        "error pulling image configuration: download failed after attempts=6: dialing production.cloudflare.docker.com:443 with direct connection: resolving host production.cloudflare.docker.com: lookup production.cloudflare.docker.com: no such host",
        DNSNameNotFound,
        Some("production.cloudflare.docker.com"),
        Some(DataEndpoint),
    ),
    // --- TCP ------------------------------------------------------------------------------------
    // kubernetes/kubernetes#91402 (crictl via kubeadm, containerd; escaped quotes)
    case(
        "kubernetes/kubernetes#91402",
        r#"time="2024-06-06T13:29:57+08:00" level=fatal msg="pulling image: failed to pull and unpack image \"registry.cn-hangzhou.aliyuncs.com/google_containers/pause:3.9\": failed to resolve reference \"registry.cn-hangzhou.aliyuncs.com/google_containers/pause:3.9\": failed to do request: Head \"https://registry.cn-hangzhou.aliyuncs.com/v2/google_containers/pause/manifests/3.9\": dial tcp 120.55.105.209:443: connect: no route to host""#,
        HostUnreachable,
        Some("registry.cn-hangzhou.aliyuncs.com"),
        Some(LoginServer),
    ),
    // ciiiii/cloudflare-docker-proxy#62 (containerd log, token host times out)
    case(
        "ciiiii/cloudflare-docker-proxy#62",
        r#"time="2024-09-13T10:48:04.953565547+08:00" level=error msg="PullImage \"docker.io/redis:latest\" failed" error="rpc error: code = DeadlineExceeded desc = failed to pull and unpack image \"docker.io/library/redis:latest\": failed to resolve reference \"docker.io/library/redis:latest\": failed to authorize: failed to fetch anonymous token: Get \"https://auth.docker.io/token?scope=repository%!A(MISSING)library%!F(MISSING)redis%!A(MISSING)pull&service=registry.docker.io\": dial tcp 108.160.165.48:443: i/o timeout""#,
        ConnectionTimedOut,
        Some("auth.docker.io"),
        Some(LoginServer),
    ),
    // Azure/kubernetes-keyvault-flexvol#167 (MCR data host, wrapped over lines as in the issue)
    case(
        "Azure/kubernetes-keyvault-flexvol#167",
        "Failed to pull image \"mcr.microsoft.com/k8s/aad-pod-identity/nmi:1.5.2\":\nrpc error: code = Unknown desc =error pulling image configuration:\nGet https://mcreus0.cdn.mscr.io/<some maskedvalue>//docker/registry/v2/blobs/sha256/cd/cd3e1d35806b542085d4b9d0e8f830eec1229185/data?P1=6876786&P2=1&P3=1&P4=qxH0VXk6%2BvJBk7BliR9oDxkrYPN%2FfS01-09T20%3A43%3A11Z&sig=BHsYWp8RKTIVseBJDU1saheHyrpxWCbw%3D&sp=r&sr=b&sv=2016-05-31&regid=aba285c624a04409823bhfjkghfdkj945749: \ndial tcp 204.79.197.219:443: i/o timeout",
        DataEndpointBlocked,
        Some("mcreus0.cdn.mscr.io"),
        Some(DataEndpoint),
    ),
    // cri-o/cri-o#3915 (CRI-O log)
    case(
        "cri-o/cri-o#3915",
        r#"level=debug msg="Response error: error creating pod sandbox with name \"k8s_kube-controller-manager-node-name_kube-system_c78971ef2a4b13e277e268a33bdd029f_0\": Error initializing source docker://k8s.gcr.io/pause:3.2: error pinging docker registry k8s.gcr.io: Get \"https://k8s.gcr.io/v2/\": dial tcp 10.254.3.15:443: connect: connection refused""#,
        ConnectionRefused,
        Some("k8s.gcr.io"),
        Some(LoginServer),
    ),
    // nilsherzig/LLocalSearch#6 (title: reset right after connecting)
    case(
        "nilsherzig/LLocalSearch#6",
        r#"Get "https://registry-1.docker.io/v2/": read tcp 192.168.1.198:55070->54.227.20.253:443: read: connection reset by peer"#,
        TLSResetAfterClientHello,
        Some("registry-1.docker.io"),
        Some(LoginServer),
    ),
    // --- TLS ------------------------------------------------------------------------------------
    // kubernetes/minikube#3721 (kubeadm preflight, Docker)
    case(
        "kubernetes/minikube#3721",
        "[ERROR ImagePull]: failed to pull image k8s.gcr.io/kube-apiserver:v1.13.3: output: Error response from daemon: Get https://k8s.gcr.io/v2/: x509: certificate signed by unknown authority",
        TLSInterception,
        Some("k8s.gcr.io"),
        Some(LoginServer),
    ),
    // crc-org/crc#1376 (kubelet with CRI-O)
    case(
        "crc-org/crc#1376",
        r#"  Warning  Failed     1s         kubelet, crc-rtgqw-master-0  Failed to pull image "default-route-openshift-image-registry.apps-crc.testing/zen/cpd-operator-init:v1.0.1-x86_64": rpc error: code = Unknown desc = error pinging docker registry default-route-openshift-image-registry.apps-crc.testing: Get https://default-route-openshift-image-registry.apps-crc.testing/v2/: x509: certificate signed by unknown authority"#,
        TLSInterception,
        Some("default-route-openshift-image-registry.apps-crc.testing"),
        Some(LoginServer),
    ),
    // cri-o/cri-o#5311 (kubelet with CRI-O, quoted URL)
    case(
        "cri-o/cri-o#5311",
        r#"Failed to pull image "m1.dev/rayshoo/ubuntu:1.0": rpc error: code = Unknown desc = error pinging docker registry m1.dev: Get "https://m1.dev/v2/": x509: certificate signed by unknown authority"#,
        TLSInterception,
        Some("m1.dev"),
        Some(LoginServer),
    ),
    // moby/moby#39505 (a middlebox certificate)
    case(
        "moby/moby#39505",
        r#"Failed to pull image "tutum/hello-world": rpc error: code = Unknown desc = Error response from daemon: Get https://registry-1.docker.io/v2/: x509: certificate is valid for GATEWAY.SPANSERVICES.COM, not registry-1.docker.io"#,
        TLSCertificateInvalid,
        Some("registry-1.docker.io"),
        Some(LoginServer),
    ),
    // konstpic/SharX#107 (expired)
    case(
        "konstpic/SharX#107",
        r#"Error response from daemon: failed to resolve reference "registry.konstpic.ru/sharx/postgres:16-alpine": failed to do request: Head "https://registry.konstpic.ru/v2/sharx/postgres/manifests/16-alpine": tls: failed to verify certificate: x509: certificate has expired or is not yet valid: current time 2026-08-13T05:50:29Z is after 2026-08-13T04:59:29Z"#,
        TLSCertificateInvalid,
        Some("registry.konstpic.ru"),
        Some(LoginServer),
    ),
    // kubernetes/registry.k8s.io#265 (no host in the message)
    case(
        "kubernetes/registry.k8s.io#265",
        "error pulling image configuration: download failed after attempts=6: tls: failed to verify certificate: x509: certificate is not valid for any names, but wanted to match prod-registry-k8s-io-ap-south-1.s3.dualstack.ap-south-1.amazonaws.com",
        TLSCertificateInvalid,
        None,
        None,
    ),
    // xiaopeng163/docker.tips#4
    case(
        "xiaopeng163/docker.tips#4",
        r#"Error response from daemon: Head "https://registry-1.docker.io/v2/library/postgres/manifests/10": net/http: TLS handshake timeout"#,
        TLSHandshakeTimeout,
        Some("registry-1.docker.io"),
        Some(LoginServer),
    ),
    // docker-archive-public/docker.kitematic#2771 (the innermost request is the token)
    case(
        "docker-archive-public/docker.kitematic#2771",
        r#"(HTTP code 500) server error - {"message":"Get https://registry-1.docker.io/v2/library/redis/manifests/latest: Get https://auth.docker.io/token?account=daishun&scope=repository%3Alibrary%2Fredis%3Apull&service=registry.docker.io: net/http: TLS handshake timeout"}"#,
        TLSHandshakeTimeout,
        Some("auth.docker.io"),
        Some(LoginServer),
    ),
    // --- HTTP -----------------------------------------------------------------------------------
    // onlyLTY/dockerCopilot#80
    case(
        "onlyLTY/dockerCopilot#80",
        r#"Error response from daemon: Get "https://registry-1.docker.io/v2/": net/http: request canceled while waiting for connection (Client.Timeout exceeded while awaiting headers)"#,
        HeadersTimeout,
        Some("registry-1.docker.io"),
        Some(LoginServer),
    ),
    // Azure/acr#77 (ACR token endpoint)
    case(
        "Azure/acr#77",
        "Error response from daemon: Get https://zapic.azurecr.io/v2/image/name/manifests/tag: Get https://zapic.azurecr.io/oauth2/token?account=zapic&scope=repository%3Aimage%2Fname%3Apull&service=zapic.azurecr.io: net/http: request canceled (Client.Timeout exceeded while awaiting headers)",
        HeadersTimeout,
        Some("zapic.azurecr.io"),
        Some(LoginServer),
    ),
    // nextcloud/docker#2409 (blob redirect target closes the connection)
    case(
        "nextcloud/docker#2409",
        r#"docker: failed to copy: httpReadSeeker: failed open: failed to do request: Get "https://production.cloudflare.docker.com/registry-v2/docker/registry/v2/blobs/sha256/3b/3b667f40b766daa8e6d7cd749704b9a1c2bed0ad0bdff0861c3150c45fa3b8ae/data?expires=1741780216&signature=CJ6rVYoagouWe1ErVFlNMklXdk8%3D&version=2": EOF"#,
        DataEndpointBlocked,
        Some("production.cloudflare.docker.com"),
        Some(DataEndpoint),
    ),
    // moby/moby#40578
    case(
        "moby/moby#40578",
        "Error response from daemon: Get https://registry-1.docker.io/v2/library/hello-world/manifests/latest: Get https://auth.docker.io/token?scope=repository%3Alibrary%2Fhello-world%3Apull&service=registry.docker.io: unexpected EOF",
        ConnectionClosed,
        Some("auth.docker.io"),
        Some(LoginServer),
    ),
    // router-for-me/CLIProxyAPI#2668
    case(
        "router-for-me/CLIProxyAPI#2668",
        r#"Error response from daemon: failed to resolve reference "docker.io/eceasy/cli-proxy-api-plus:latest": failed to authorize: failed to fetch anonymous token: Get "https://auth.docker.io/token?scope=repository%3Aeceasy%2Fcli-proxy-api-plus%3Apull&service=registry.docker.io": EOF"#,
        ConnectionClosed,
        Some("auth.docker.io"),
        Some(LoginServer),
    ),
    // --- Azure Storage --------------------------------------------------------------------------
    // MicrosoftDocs/azure-docs#116188: ACR layers from its storage account, blocked by a
    // firewall rule with a typo; kubelet joined two attempts, the second a token 401.
    case(
        "MicrosoftDocs/azure-docs#116188",
        r#"Failed to pull image "myregistry.azurecr.io/myimage:16102023": [rpc error: code = Unknown desc = failed to pull and unpack image "myregistry.azurecr.io/myimage:16102023": failed to copy: httpReadSeeker: failed open: failed to do request: Get "https://weumanaged15.blob.core.windows.net/xxxx/docker/registry/v2/blobs/sha256/fd/xxxx/data?se=2023-10-19T13%3A03%3A46Z&sig=xxxx%3D&sp=r&spr=https&sr=b&sv=2018-03-28&regid=xxxx": EOF, rpc error: code = Unknown desc = failed to pull and unpack image "myregistry.azurecr.io/myimage:16102023": failed to resolve reference "myregistry.azurecr.io/myimage:16102023": failed to authorize: failed to fetch anonymous token: unexpected status from GET request to https://myregistry.azurecr.io/oauth2/token?scope=repository%3Amyimage%3Apull&service=myregistry.azurecr.io: 401 Unauthorized]"#,
        DataEndpointBlocked,
        Some("weumanaged15.blob.core.windows.net"),
        Some(DataEndpoint),
    ),
    // microsoft/AzureStorageExplorer#3594: the storage service's own 403 body. No public pull
    // error carrying it was found; this checks the storage signature, not a runtime's wording.
    case(
        "microsoft/AzureStorageExplorer#3594",
        r#"["RestError:<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthorizationFailure</Code><Message>This request is not authorized to perform this operation.\nRequestId:b7039efa-401e-0020-6388-8b8c67000000\nTime:2020-09-15T17:51:25.5367916Z</Message></Error>"]"#,
        StorageAccessDenied,
        None,
        None,
    ),
    // --- success ------------------------------------------------------------------------------
    // kubernetes/kubernetes#92326 (kubectl get events)
    case(
        "kubernetes/kubernetes#92326",
        r#"61s         Normal    Pulled              Pod          Successfully pulled image "nginx:1.14.2""#,
        Healthy,
        Some("docker.io"),
        Some(LoginServer),
    ),
];

#[test]
fn real_messages() {
    let mut failures = Vec::new();
    for c in CASES {
        let got = classify(c.message);
        if got.reason != c.reason || got.host.as_deref() != c.host || got.role != c.role {
            failures.push(format!(
                "{}: want {:?} {:?} {:?}, got {:?} {:?} {:?} ({})",
                c.source, c.reason, c.host, c.role, got.reason, got.host, got.role, got.detail
            ));
        }
        assert!(!got.message.is_empty(), "{}: message kept", c.source);
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert!(CASES.len() >= 30);
}

fn get(source: &str) -> Classified {
    let c = CASES.iter().find(|c| c.source == source).unwrap();
    classify(c.message)
}

#[test]
fn addresses_nameservers_and_client_ips() {
    assert_eq!(
        get("istio/community#25").nameserver.as_deref(),
        Some("192.168.64.1:53")
    );
    assert_eq!(
        get("docker-archive-public/docker.kitematic#1635")
            .nameserver
            .as_deref(),
        Some("[::1]:53")
    );
    assert_eq!(
        get("docker-archive-public/docker.kitematic#1577")
            .nameserver
            .as_deref(),
        Some("8.8.8.8:53")
    );
    // A lookup without a nameserver (cgo resolver or Docker's dialer).
    assert_eq!(get("docker/hub-feedback#2376").nameserver, None);
    assert_eq!(
        get("kubernetes/kubernetes#91402").address.as_deref(),
        Some("120.55.105.209:443")
    );
    assert_eq!(
        get("Azure/kubernetes-keyvault-flexvol#167")
            .address
            .as_deref(),
        Some("204.79.197.219:443")
    );
    assert_eq!(
        get("nilsherzig/LLocalSearch#6").address.as_deref(),
        Some("54.227.20.253:443")
    );
    // Proxy reasons name the proxy's address.
    assert_eq!(
        get("docker/for-win#9400").address.as_deref(),
        Some("127.0.0.1:8080")
    );
    assert_eq!(get("docker/for-win#7935").address.as_deref(), Some(":0"));
    assert_eq!(
        get("docker/build-push-action#1214").client_ip.as_deref(),
        Some("172.214.169.102")
    );
    // A masked IP is not an address.
    assert_eq!(get("Azure/acr#633").client_ip, None);
    assert_eq!(
        get("kubewarden/adm-controller#1378").image.as_deref(),
        Some("ghcr.io/kubewarden/kubewarden-controller:latest")
    );
}

// ---------------------------------------------------------------------------------------------
// The project's test cluster (../shared/cluster/README.md, FIELD-GUIDE.md): containerd 1.6
// behind the dead proxy 127.0.0.1:9, and a lab registry with an untrusted CA. The README and
// field guide quote these causes; the full kubelet form below wraps them the way the field
// guide records it (`failed to resolve reference ...: failed to do request: Head ...`), which
// is also the form of the public containerd messages above (kubernetes/kubernetes#91402,
// enix/kube-image-keeper#60).

#[test]
fn cluster_dead_proxy() {
    // The cause exactly as the cluster README quotes it.
    let c = classify("proxyconnect tcp: dial tcp 127.0.0.1:9: connect: connection refused");
    assert_eq!(c.reason, ProxyUnreachable);
    assert_eq!(c.address.as_deref(), Some("127.0.0.1:9"));
    // Not TargetAddressBlocked: the loopback address is the proxy's, by configuration.
    let full = classify(
        r#"Failed to pull image "myregistry.azurecr.io/app:1": rpc error: code = Unknown desc = failed to pull and unpack image "myregistry.azurecr.io/app:1": failed to resolve reference "myregistry.azurecr.io/app:1": failed to do request: Head "https://myregistry.azurecr.io/v2/app/manifests/1": proxyconnect tcp: dial tcp 127.0.0.1:9: connect: connection refused"#,
    );
    assert_eq!(full.reason, ProxyUnreachable);
    assert_eq!(full.host.as_deref(), Some("myregistry.azurecr.io"));
    assert_eq!(full.role, Some(LoginServer));
    assert_eq!(full.address.as_deref(), Some("127.0.0.1:9"));
}

#[test]
fn cluster_untrusted_lab_ca() {
    let c = classify("x509: certificate signed by unknown authority");
    assert_eq!(c.reason, TLSInterception);
    let full = classify(
        r#"Failed to pull image "10.88.0.1:5000/lab/app:1": rpc error: code = Unknown desc = failed to pull and unpack image "10.88.0.1:5000/lab/app:1": failed to resolve reference "10.88.0.1:5000/lab/app:1": failed to do request: Head "https://10.88.0.1:5000/v2/lab/app/manifests/1": x509: certificate signed by unknown authority"#,
    );
    assert_eq!(full.reason, TLSInterception);
    assert_eq!(full.host.as_deref(), Some("10.88.0.1:5000"));
    // The field guide's blob redirect on the cluster: the data endpoint's certificate has no
    // IP SANs.
    let blob = classify(
        r#"failed to copy: httpReadSeeker: failed open: failed to do request: Get "https://10.88.0.1:5001/blobs/sha256:0123": x509: cannot validate certificate for 10.88.0.1 because it doesn't contain any IP SANs"#,
    );
    assert_eq!(blob.reason, TLSCertificateInvalid);
    assert_eq!(blob.role, Some(DataEndpoint));
}

// ---------------------------------------------------------------------------------------------
// Forms for which no public example was found: Go's own wording, checked rule by rule.

#[test]
fn go_wordings_without_public_examples() {
    let cases = [
        // A non-200 answer to CONNECT is the bare status text (net/http transport).
        (
            r#"failed to do request: Head "https://r.azurecr.io/v2/a/manifests/1": Forbidden"#,
            ProxyDenied,
        ),
        (
            r#"failed to do request: Head "https://r.azurecr.io/v2/a/manifests/1": Proxy Authentication Required"#,
            ProxyAuthRequired,
        ),
        (
            r#"failed to do request: Head "https://r.azurecr.io/v2/a/manifests/1": Bad Gateway"#,
            ProxyUpstreamFailed,
        ),
        (
            r#"failed to do request: Head "https://r.azurecr.io/v2/a/manifests/1": proxyconnect tcp: tls: first record does not look like a TLS handshake"#,
            ProxyConnectEOF,
        ),
        (
            r#"failed to do request: Head "https://r.azurecr.io/v2/a/manifests/1": dial tcp 10.1.2.3:443: connect: connection timed out"#,
            ConnectionTimedOut,
        ),
        // A registry name that resolves to loopback: a hosts entry or a DNS sinkhole.
        (
            r#"failed to do request: Head "https://r.azurecr.io/v2/a/manifests/1": dial tcp 127.0.0.1:443: connect: connection refused"#,
            TargetAddressBlocked,
        ),
        (
            r#"failed to copy: httpReadSeeker: failed open: unexpected status code https://r.westeurope.data.azurecr.io/a/blobs/sha256:0: 403 Forbidden"#,
            RegistryForbidden,
        ),
        (
            r#"failed to copy: httpReadSeeker: failed open: unexpected status code https://acct.blob.core.windows.net/x/y: 403 This request is not authorized to perform this operation."#,
            StorageAccessDenied,
        ),
        ("something else entirely", PullFailed),
    ];
    for (m, want) in cases {
        assert_eq!(classify(m).reason, want, "{m}");
    }
    let data = classify(cases[6].0);
    assert_eq!(data.role, Some(DataEndpoint));
    assert_eq!(data.host.as_deref(), Some("r.westeurope.data.azurecr.io"));
    let storage = classify(cases[7].0);
    assert_eq!(storage.role, Some(DataEndpoint));
    // A loopback registry by IP is not blocked: it is where the user said it is.
    assert_eq!(
        classify(r#"Head "https://127.0.0.1:5000/v2/a/manifests/1": dial tcp 127.0.0.1:5000: connect: connection refused"#).reason,
        ConnectionRefused
    );
}

#[test]
fn joined_attempts_keep_the_whole_message() {
    let c = get("MicrosoftDocs/azure-docs#116188");
    assert!(c.message.ends_with("401 Unauthorized]"), "{}", c.message);
    assert_eq!(
        c.image.as_deref(),
        Some("myregistry.azurecr.io/myimage:16102023")
    );
}

#[test]
fn success_failure_and_describe_output() {
    // A whole `kubectl describe pod` events block: the failure wins over earlier success.
    let describe = r#"Events:
  Type     Reason     Age                From               Message
  ----     ------     ----               ----               -------
  Normal   Pulled     2m                 kubelet            Successfully pulled image "busybox:1" in 44ms
  Normal   Pulling    50s (x4 over 2m)   kubelet            Pulling image "r.azurecr.io/app:1"
  Warning  Failed     50s (x4 over 2m)   kubelet            Failed to pull image "r.azurecr.io/app:1": rpc error: code = Unknown desc = failed to pull and unpack image "r.azurecr.io/app:1": failed to resolve reference "r.azurecr.io/app:1": failed to do request: Head "https://r.azurecr.io/v2/app/manifests/1": dial tcp: lookup r.azurecr.io on 10.0.0.10:53: no such host
  Warning  Failed     50s (x4 over 2m)   kubelet            Error: ErrImagePull"#;
    let c = classify(describe);
    assert_eq!(c.reason, DNSNameNotFound);
    assert_eq!(c.host.as_deref(), Some("r.azurecr.io"));
    assert_eq!(c.nameserver.as_deref(), Some("10.0.0.10:53"));
    assert!(c.message.starts_with("Warning  Failed"), "{}", c.message);
    // Only the state without a cause: nothing to recognise.
    assert_eq!(classify("Error: ImagePullBackOff").reason, PullFailed);
}

#[test]
fn reports_render_like_check() {
    let c = get("docker/build-push-action#1214");
    let r = to_report(&c);
    assert_eq!(r.schema_version, SCHEMA_VERSION);
    assert_eq!(r.findings.len(), 1);
    let f = &r.findings[0];
    assert_eq!(f.reason, RegistryDeniedClientIP);
    assert_eq!(f.code.as_deref(), Some("CONNECTIVITY_FORBIDDEN_ERROR"));
    assert_eq!(f.endpoint, ".azurecr.io");
    assert!(f.message.contains("172.214.169.102"), "{}", f.message);
    assert!(!f.remediation.is_empty() && !f.docs.is_empty());
    assert_eq!(r.verdict, crate::engine::findings::Verdict::Unreachable);
    let json: serde_json::Value =
        serde_json::from_str(&crate::engine::report::to_json(&r, false)).unwrap();
    assert_eq!(json["findings"][0]["reason"], "RegistryDeniedClientIP");
    assert_eq!(json["schemaVersion"], 1);
    let table = crate::engine::report::render_table(&r, false);
    assert!(
        table.contains("Diagnosis: RegistryDeniedClientIP"),
        "{table}"
    );

    let ok = to_report(&get("kubernetes/kubernetes#92326"));
    assert_eq!(ok.verdict, crate::engine::findings::Verdict::Healthy);
    assert_eq!(crate::cli::exit_code(&ok), 0);

    let data = to_report(&get("nextcloud/docker#2409"));
    assert_eq!(data.findings[0].role, Some(DataEndpoint));
    assert_eq!(data.verdict, crate::engine::findings::Verdict::Degraded);
}

#[test]
fn private_client_ip_denial_is_a_vnet_path() {
    let private = classify(
        r#"Failed to pull image "myreg.azurecr.io/app:v1": rpc error: code = Unknown desc = failed to pull and unpack image "myreg.azurecr.io/app:v1": failed to resolve reference "myreg.azurecr.io/app:v1": failed to authorize: failed to fetch anonymous token: unexpected status: 403 Forbidden: denied: client with IP '10.240.0.4' is not allowed access. Refer https://aka.ms/acr/firewall to grant access."#,
    );
    assert_eq!(private.reason, RegistryDeniedPrivateClientIP, "{private:?}");
    let public = classify(
        "denied: client with IP '52.10.20.30' is not allowed access. Refer https://aka.ms/acr/firewall to grant access.",
    );
    assert_eq!(public.reason, RegistryDeniedClientIP, "{public:?}");
}

proptest::proptest! {
    /// Any text, including pieces of real messages cut anywhere and non-ASCII, gets a reason
    /// and never a panic; non-blank text keeps a message.
    #[test]
    fn any_text_is_classified(
        cut in 0usize..600,
        pick in 0usize..CASES.len(),
        noise in "\\PC{0,80}",
    ) {
        let m = CASES[pick].message;
        let end = m.char_indices().map(|(i, _)| i).find(|&i| i >= cut).unwrap_or(m.len());
        for text in [format!("{}{noise}", &m[..end]), format!("{noise}{}", &m[end..]), noise.clone()] {
            let c = classify(&text);
            if !text.trim().is_empty() {
                proptest::prop_assert!(!c.message.is_empty());
            }
            let r = to_report(&c);
            proptest::prop_assert_eq!(r.findings.len(), 1);
        }
    }
}
