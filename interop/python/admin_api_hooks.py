"""Schemathesis hooks for the admin API run (interop/server): every request carries a fresh access token with the
portcullis:admin scope, fetched with client_credentials. A fresh one each second, because the run itself may
revoke the signing key or the subject that the previous token was issued under, which is allowed."""

import os

import requests
import schemathesis


@schemathesis.auth(refresh_interval=1)
class AdminToken:
    def get(self, case, context):
        response = requests.post(
            os.environ["PORTCULLIS_ISSUER"] + "/oauth2/token",
            data={"grant_type": "client_credentials", "scope": "portcullis:admin"},
            auth=(os.environ["PORTCULLIS_ADMIN_CLIENT"], os.environ["PORTCULLIS_ADMIN_SECRET"]),
            timeout=10,
        )
        response.raise_for_status()
        return response.json()["access_token"]

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
