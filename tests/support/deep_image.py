#!/usr/bin/env python3
"""Writes an OCI image layout with N small layers, by Python's tarfile (not ours).

usage: deep_image.py DIR N TAG

Layer i holds l/<i> ("i") and rewrites top ("i"); layer 3 adds gone, layer 7
removes it with a .wh. whiteout; layer 5 makes dir d/ with d/old, and the last
layer makes d/ opaque and adds d/new.
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile


def add(tf, name, data=b"", kind=tarfile.REGTYPE, mode=0o644):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime, ti.size = kind, mode, 1700000000, len(data)
    tf.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def blob(out, data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(out, "blobs", "sha256", d), "wb") as f:
        f.write(data)
    return "sha256:" + d, len(data)


def main():
    out, n, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
    layers, diffs = [], []
    for i in range(n):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            if i == 0:
                add(tf, "l", kind=tarfile.DIRTYPE, mode=0o755)
            add(tf, "l/%d" % i, str(i).encode())
            add(tf, "top", str(i).encode())
            if i == 3:
                add(tf, "gone", b"x")
            if i == 7:
                add(tf, ".wh.gone")
            if i == 5:
                add(tf, "d", kind=tarfile.DIRTYPE, mode=0o755)
                add(tf, "d/old", b"old")
            if i == n - 1:
                add(tf, "d", kind=tarfile.DIRTYPE, mode=0o755)
                add(tf, "d/.wh..wh..opq")
                add(tf, "d/new", b"new")
        raw = buf.getvalue()
        diffs.append("sha256:" + hashlib.sha256(raw).hexdigest())
        digest, size = blob(out, gzip.compress(raw, mtime=0))
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size})
    config = {
        "architecture": os.environ.get("ARCH", "amd64"),
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diffs},
    }
    cd, cs = blob(out, json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": layers,
    }
    md, ms = blob(out, json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    }
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)


main()
