"""A throwaway CA with server and client certificates (openssl) for the checks' TLS."""
import os

from .steps import run


def test_pki(directory, server_name):
    """A throwaway CA, a server certificate for server_name and a client certificate
    (EC P-256, two days), made with openssl, for validation and the pod check. Returns
    {"ca.crt": path, "server": (cert, key), "client": (cert, key)}."""
    os.makedirs(directory, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca, ca_key = os.path.join(directory, "ca.crt"), os.path.join(directory, "ca.key")
    run(["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=keysync test CA"], timeout=60)
    made = {"ca.crt": ca}
    for name, common_name, extensions in [
        ("server", server_name, f"subjectAltName=DNS:{server_name}\nextendedKeyUsage=serverAuth\n"),
        ("client", "keysync-gateway", "extendedKeyUsage=clientAuth\n"),
    ]:
        key, csr, cert, ext = (os.path.join(directory, f"{name}.{suffix}") for suffix in ("key", "csr", "crt", "ext"))
        with open(ext, "w", encoding="utf-8") as f:
            f.write(extensions)
        run(["openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", f"/CN={common_name}"], timeout=60)
        run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
             "-out", cert, "-days", "2", "-extfile", ext], timeout=60)
        made[name] = (cert, key)
    return made
