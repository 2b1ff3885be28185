"""Push a tiny one-layer image over the registry HTTP API (plain HTTP on loopback).

Shared by the network lab (tests/lab/lab.py) and the e2e lab servers (tests/e2e/servers.py):
a tar with one file, gzipped deterministically, a config, and a schema-2 manifest.
"""

import gzip
import hashlib
import http.client
import io
import json
import tarfile
from urllib.parse import urlsplit


def push_image(port, repo, tag, content, headers=None):
    """Push the image to the registry on 127.0.0.1:`port`; `headers` (e.g. Authorization) go
    with every request. Returns the digests and the layer size."""
    base_headers = dict(headers or {})

    def req(method, path, body=None, extra=None):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        h = dict(base_headers)
        h.update(extra or {})
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, dict(r.getheaders()), data

    def push_blob(blob):
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        st, h, body = req("POST", f"/v2/{repo}/blobs/uploads/")
        if st != 202:
            raise RuntimeError(f"upload start: {st} {body[:200]!r}")
        loc = urlsplit(h["Location"])
        sep = "&" if loc.query else ""
        path = f"{loc.path}?{loc.query}{sep}digest={digest}"
        st, _, body = req("PUT", path, blob, {"Content-Type": "application/octet-stream",
                                              "Content-Length": str(len(blob))})
        if st != 201:
            raise RuntimeError(f"upload put: {st} {body[:200]!r}")
        return digest

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        ti = tarfile.TarInfo("hello.txt")
        ti.size = len(content)
        ti.mtime = 0
        tf.addfile(ti, io.BytesIO(content))
    tar = raw.getvalue()
    layer = gzip.compress(tar, mtime=0)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/hello.txt"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
    }, separators=(",", ":")).encode()
    ld = push_blob(layer)
    cd = push_blob(config)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": len(config), "digest": cd},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer), "digest": ld}],
    }, separators=(",", ":")).encode()
    st, _, body = req("PUT", f"/v2/{repo}/manifests/{tag}", manifest,
                      {"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"})
    if st != 201:
        raise RuntimeError(f"manifest put: {st} {body[:200]!r}")
    return {"layer": ld, "layerSize": len(layer), "config": cd,
            "manifest": "sha256:" + hashlib.sha256(manifest).hexdigest()}
