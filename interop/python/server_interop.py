"""Drives a running Portcullis server with PyPI authlib (requests integration), unchanged: discovery,
client_credentials, the password grant, refresh, introspection and revocation; and verifies the access
token against the JWKS with authlib's joserfc-based JWT support.

Usage: server_interop.py ISSUER CLIENT_ID CLIENT_SECRET USERNAME PASSWORD
"""
import sys

import requests
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import KeySet

issuer, client_id, client_secret, username, password = sys.argv[1:6]
failures = 0


def check(name, ok, detail=""):
    global failures
    print(f"authlib {name}: {'ok' if ok else 'FAILED ' + str(detail)}")
    if not ok:
        failures += 1


meta = requests.get(f"{issuer}/.well-known/oauth-authorization-server", timeout=10).json()
check("discovery", meta["issuer"] == issuer, meta)
session = OAuth2Session(client_id, client_secret, token_endpoint_auth_method="client_secret_basic", scope="read")
cc = session.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
check("client_credentials", cc["token_type"].lower() == "bearer" and cc["scope"] == "read", cc)

keys = KeySet.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())
token = jwt.decode(cc["access_token"], keys, algorithms=["ES256"])
claims = jwt.JWTClaimsRegistry(iss={"essential": True, "value": issuer}, aud={"essential": True, "value": "api"})
claims.validate(token.claims)
check("JWT verify", token.header.get("typ") == "at+jwt" and token.claims["client_id"] == client_id)

user = OAuth2Session(client_id, client_secret, token_endpoint_auth_method="client_secret_post")
pw = user.fetch_token(meta["token_endpoint"], username=username, password=password)
check("password grant", "refresh_token" in pw, pw)
refreshed = user.refresh_token(meta["token_endpoint"], refresh_token=pw["refresh_token"])
check("refresh", refreshed["refresh_token"] != pw["refresh_token"])

intro = user.introspect_token(meta["introspection_endpoint"], token=refreshed["access_token"]).json()
check("introspection", intro.get("active") is True and intro.get("client_id") == client_id, intro)
resp = user.revoke_token(meta["revocation_endpoint"], token=refreshed["refresh_token"], token_type_hint="refresh_token")
check("revocation", resp.status_code == 200, resp.status_code)
intro = user.introspect_token(meta["introspection_endpoint"], token=refreshed["access_token"]).json()
check("session's access token inactive after revocation", intro == {"active": False}, intro)
try:
    user.refresh_token(meta["token_endpoint"], refresh_token=refreshed["refresh_token"])
    check("revoked refresh refused", False, "accepted")
except Exception as e:  # authlib raises OAuthError with the RFC error code
    check("revoked refresh refused", "invalid_grant" in str(e), e)

print(f"server interop (python): {9 - failures} passed, {failures} failed")
sys.exit(0 if failures == 0 else 1)
