#!/bin/sh
# Regenerates the test-only key fixtures in this folder (never real secrets).
# Needs openssl 3 and python3 with the `cryptography` package (for the JWK files).
set -eu
cd "$(dirname "$0")"

# RSA 2048: PKCS#8 and PKCS#1, PEM and DER; public key as PKCS#1 RSAPublicKey DER.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pkcs8.pem
openssl pkcs8 -topk8 -nocrypt -in rsa.pkcs8.pem -outform DER -out rsa.pkcs8.der
openssl rsa -in rsa.pkcs8.pem -traditional -out rsa.pkcs1.pem
openssl rsa -in rsa.pkcs8.pem -traditional -outform DER -out rsa.pkcs1.der
openssl rsa -in rsa.pkcs8.pem -RSAPublicKey_out -outform DER -out rsa.pub.der

# EC P-256 and P-384: PKCS#8 and SEC1, PEM and DER; public key as SPKI DER.
for c in p256:prime256v1 p384:secp384r1; do
  n=${c%%:*}; curve=${c#*:}
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:$curve -out $n.pkcs8.pem
  openssl pkcs8 -topk8 -nocrypt -in $n.pkcs8.pem -outform DER -out $n.pkcs8.der
  openssl ec -in $n.pkcs8.pem -out $n.sec1.pem
  openssl ec -in $n.pkcs8.pem -outform DER -out $n.sec1.der
  openssl ec -in $n.pkcs8.pem -pubout -outform DER -out $n.pub.der
done

# Ed25519: PKCS#8 PEM and DER; public key as SPKI DER.
openssl genpkey -algorithm ED25519 -out ed25519.pkcs8.pem
openssl pkcs8 -topk8 -nocrypt -in ed25519.pkcs8.pem -outform DER -out ed25519.pkcs8.der
openssl pkey -in ed25519.pkcs8.pem -pubout -outform DER -out ed25519.pub.der

# Keys that must be refused: P-521, RSA 1024, an encrypted PKCS#8 key, a certificate.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:secp521r1 -out p521.pkcs8.pem
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out rsa1024.pkcs8.pem
openssl pkcs8 -topk8 -v2 aes-256-cbc -passout pass:test-only -in p256.pkcs8.pem -out p256.encrypted.pem
openssl req -x509 -new -key p256.pkcs8.pem -subj /CN=test-only -days 3650 -out p256.cert.pem

# JWK private keys for the same keys.
python3 - <<'PY'
import base64, json
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa, ec, ed25519

def b64(n, size=None):
    if isinstance(n, int):
        size = size or max(1, (n.bit_length() + 7) // 8)
        n = n.to_bytes(size, "big")
    return base64.urlsafe_b64encode(n).rstrip(b"=").decode()

def load(name):
    with open(name, "rb") as f:
        return serialization.load_pem_private_key(f.read(), None)

def dump(name, jwk):
    with open(name, "w") as f:
        json.dump(jwk, f, indent=1)
        f.write("\n")

k = load("rsa.pkcs8.pem").private_numbers()
dump("rsa.jwk.json", {"kty": "RSA", "kid": "rsa-test", "n": b64(k.public_numbers.n), "e": b64(k.public_numbers.e),
     "d": b64(k.d), "p": b64(k.p), "q": b64(k.q), "dp": b64(k.dmp1), "dq": b64(k.dmq1), "qi": b64(k.iqmp)})
for name, crv, size in [("p256", "P-256", 32), ("p384", "P-384", 48), ("p521", "P-521", 66)]:
    k = load(name + ".pkcs8.pem").private_numbers()
    dump(name + ".jwk.json", {"kty": "EC", "crv": crv, "kid": name + "-test",
         "x": b64(k.public_numbers.x, size), "y": b64(k.public_numbers.y, size), "d": b64(k.private_value, size)})
k = load("ed25519.pkcs8.pem")
raw = serialization.Encoding.Raw
dump("ed25519.jwk.json", {"kty": "OKP", "crv": "Ed25519", "kid": "ed25519-test",
     "x": b64(k.public_key().public_bytes(raw, serialization.PublicFormat.Raw)),
     "d": b64(k.private_bytes(raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()))})
PY
