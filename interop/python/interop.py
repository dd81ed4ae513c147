"""Interop with PyPI `pyjwt` and `joserfc`.

`verify DIR`: verify every DIR/ours-ALG.token with DIR/ours-ALG.public.json, with both libraries.
`sign LIB DIR`: with LIB (pyjwt or joserfc), make a key and a token per algorithm: theirs-ALG.{public.json,token}.
"""
import json
import sys
import time

import jwt as pyjwt
from joserfc import jwt as rfc_jwt
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey, import_key

ALGS = ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
        "ES256", "ES384", "ES512", "EdDSA"]
CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
NOW = int(time.time())


def generate(alg):
    if alg.startswith("HS"):
        return OctKey.generate_key(int(alg[2:]))
    if alg[:2] in ("RS", "PS"):
        return RSAKey.generate_key(2048)
    if alg.startswith("ES"):
        return ECKey.generate_key(CURVES[alg])
    return OKPKey.generate_key("Ed25519")


def verify(directory):
    failures = 0
    for alg in ALGS:
        try:
            with open(f"{directory}/ours-{alg}.public.json") as f:
                jwk = json.load(f)
            with open(f"{directory}/ours-{alg}.token") as f:
                token = f.read().strip()
            # pyjwt
            key = pyjwt.PyJWK(jwk)
            claims = pyjwt.decode(token, key, algorithms=[alg], audience="interop",
                                  issuer="https://portcullis.test")
            assert claims["sub"] == "interop-user", claims
            assert pyjwt.get_unverified_header(token)["typ"] == "at+jwt"
            # joserfc
            rfc_key = import_key(jwk)
            decoded = rfc_jwt.decode(token, rfc_key, algorithms=[alg])
            rfc_jwt.JWTClaimsRegistry(iss={"essential": True, "value": "https://portcullis.test"},
                                      aud={"essential": True, "value": "interop"}).validate(decoded.claims)
            assert decoded.claims["sub"] == "interop-user"
            print(f"pyjwt+joserfc verify {alg}: ok")
        except Exception as e:  # report every algorithm, then fail
            failures += 1
            print(f"pyjwt+joserfc verify {alg}: FAILED: {e!r}")
    return failures


def sign(lib, directory):
    failures = 0
    for alg in ALGS:
        try:
            key = generate(alg)
            kid = f"{lib}-{alg}"
            claims = {"iss": "https://peer.test", "aud": "interop", "sub": "peer-user", "iat": NOW,
                      "exp": NOW + 300, "jti": f"jti-{alg}", "scope": "read"}
            header = {"alg": alg, "kid": kid, "typ": "at+jwt"}
            if lib == "pyjwt":
                signing = pyjwt.PyJWK(key.as_dict(private=True), algorithm=alg).key
                token = pyjwt.encode(claims, signing, algorithm=alg, headers={"kid": kid, "typ": "at+jwt"})
            else:
                token = rfc_jwt.encode(header, claims, key, algorithms=[alg])
            public = key.as_dict(private=alg.startswith("HS"))
            public.update({"alg": alg, "kid": kid})
            with open(f"{directory}/theirs-{alg}.public.json", "w") as f:
                json.dump(public, f)
            with open(f"{directory}/theirs-{alg}.token", "w") as f:
                f.write(token)
            print(f"{lib} sign {alg}: ok")
        except Exception as e:
            failures += 1
            print(f"{lib} sign {alg}: FAILED: {e!r}")
    return failures


if __name__ == "__main__":
    if sys.argv[1] == "verify":
        sys.exit(1 if verify(sys.argv[2]) else 0)
    sys.exit(1 if sign(sys.argv[2], sys.argv[3]) else 0)
