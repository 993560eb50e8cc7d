"""Reading an OCI image layout: its manifest digest and its blobs."""
import json
import os


def oci_digest(layout):
    with open(os.path.join(layout, "index.json"), encoding="utf-8") as f:
        return json.load(f)["manifests"][0]["digest"]


def oci_blob(layout, digest):
    algorithm, value = digest.split(":")
    return os.path.join(layout, "blobs", algorithm, value)


def oci_json(layout, digest):
    with open(oci_blob(layout, digest), encoding="utf-8") as f:
        return json.load(f)
