#!/usr/bin/env python3
"""Keys, a JWKS and bearer tokens for bench/run's JWT rows, made with the openssl command line.

One P-256 key (ES256) and one 2048-bit RSA key (RS256), both published in one JWKS that the
benchmark's upstream serves as a static file. For each algorithm, COUNT tokens with distinct
subjects (`user-000` ...), valid for two hours, one per line, so the load generator can cycle
them and the rate-limit rows count per subject. The Python standard library has no signing, so
openssl signs and this file only assembles: base64url, the JWS signing input, and ECDSA's DER
signature turned into the raw r||s that JWS wants.

Usage: jwt.py DIR ISSUER AUDIENCE COUNT
  writes DIR/jwks.json, DIR/es256.tokens, DIR/rs256.tokens (keys stay in DIR).
"""
import base64
import json
import os
import subprocess
import sys
import time


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def openssl(*args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=data, check=True, capture_output=True).stdout


def der_to_raw(sig: bytes, size: int) -> bytes:
    """ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } to r||s, each `size` bytes."""
    if sig[0] != 0x30:
        raise ValueError("not a DER sequence")
    pos = 2 if sig[1] < 0x80 else 2 + (sig[1] & 0x7F)
    out = b""
    for _ in range(2):
        if sig[pos] != 0x02:
            raise ValueError("not a DER integer")
        length = sig[pos + 1]
        value = sig[pos + 2 : pos + 2 + length].lstrip(b"\x00")
        out += value.rjust(size, b"\x00")
        pos += 2 + length
    return out


def main() -> None:
    out, issuer, audience, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    ec_key, rsa_key = os.path.join(out, "ec.pem"), os.path.join(out, "rsa.pem")
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", ec_key)
    openssl("genrsa", "-out", rsa_key, "2048")

    # The EC public key's SubjectPublicKeyInfo ends with the uncompressed point 04||x||y.
    point = openssl("ec", "-in", ec_key, "-pubout", "-outform", "DER")[-65:]
    modulus = openssl("rsa", "-in", rsa_key, "-noout", "-modulus").decode().strip()
    modulus = bytes.fromhex(modulus.split("=", 1)[1])
    jwks = {
        "keys": [
            {"kty": "EC", "crv": "P-256", "kid": "bench-es256", "alg": "ES256", "use": "sig",
             "x": b64url(point[1:33]), "y": b64url(point[33:65])},
            {"kty": "RSA", "kid": "bench-rs256", "alg": "RS256", "use": "sig",
             "n": b64url(modulus), "e": "AQAB"},
        ]
    }
    with open(os.path.join(out, "jwks.json"), "w") as f:
        json.dump(jwks, f)

    now = int(time.time())
    for alg, key, kid in [("ES256", ec_key, "bench-es256"), ("RS256", rsa_key, "bench-rs256")]:
        header = b64url(json.dumps({"typ": "JWT", "alg": alg, "kid": kid}).encode())
        lines = []
        for i in range(count):
            claims = {"iss": issuer, "aud": audience, "sub": f"user-{i:03d}",
                      "iat": now, "exp": now + 7200}
            signing_input = f"{header}.{b64url(json.dumps(claims).encode())}"
            sig = openssl("dgst", "-sha256", "-sign", key, data=signing_input.encode())
            if alg == "ES256":
                sig = der_to_raw(sig, 32)
            lines.append(f"{signing_input}.{b64url(sig)}")
        with open(os.path.join(out, f"{alg.lower()}.tokens"), "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
