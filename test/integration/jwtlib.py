"""Tokens for the integration tests, made without portico's code: HS* with
Python's hmac, RS256 and ES256 with the openssl command line."""

import base64
import hashlib
import hmac
import json
import os
import subprocess
import time


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segments(header, claims):
    return (b64url(json.dumps(header, separators=(",", ":")).encode()) +
            "." +
            b64url(json.dumps(claims, separators=(",", ":")).encode()))


def claims(sub="alice", ttl=3600, **extra):
    now = int(time.time())
    c = {"sub": sub, "iat": now, "exp": now + ttl}
    c.update(extra)
    return {k: v for k, v in c.items() if v is not None}


def hs256(secret, claims_, kid=None, alg="HS256", header_extra=None):
    h = {"alg": alg, "typ": "JWT"}
    if kid:
        h["kid"] = kid
    h.update(header_extra or {})
    si = segments(h, claims_)
    dig = {"HS256": hashlib.sha256, "HS384": hashlib.sha384,
           "HS512": hashlib.sha512}[alg]
    sig = hmac.new(secret, si.encode(), dig).digest()
    return si + "." + b64url(sig)


def rs256(key_pem_path, claims_, kid=None):
    h = {"alg": "RS256", "typ": "JWT"}
    if kid:
        h["kid"] = kid
    si = segments(h, claims_)
    sig = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", key_pem_path],
        input=si.encode(), capture_output=True, check=True).stdout
    return si + "." + b64url(sig)


def make_rsa(dirpath, name="rs"):
    """An RSA key pair in dirpath: (private pem path, public pem path)."""
    priv = os.path.join(dirpath, name + ".pem")
    pub = os.path.join(dirpath, name + ".pub.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA",
                    "-pkeyopt", "rsa_keygen_bits:2048", "-out", priv],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", priv, "-pubout", "-out", pub],
                   check=True, capture_output=True)
    return priv, pub
