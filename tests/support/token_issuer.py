#!/usr/bin/env python3
"""A token issuer for docker-registry's token auth, for tests (loopback only).

usage: token_issuer.py PORT KEY.pem CERT.pem LOG

GET /token?service=S&scope=repository:NAME:ACTIONS[&scope=...] answers
{"token": JWT} for anyone (Docker Hub's anonymous flow), signed RS256 with KEY
and carrying CERT in x5c so the registry can check it against its root bundle.
Each request is appended to LOG.
"""
import base64, json, os, subprocess, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

port, key, cert, log = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
der = subprocess.run(["openssl", "x509", "-in", cert, "-outform", "DER"], check=True, capture_output=True).stdout


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlparse(self.path)
        q = parse_qs(url.query)
        with open(log, "a") as f:
            f.write(self.path + "\n")
        access = []
        for scope in q.get("scope", []):
            kind, name, actions = scope.split(":", 2) if scope.count(":") >= 2 else ("repository", scope, "pull")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        claims = {"iss": "layers-test-issuer", "sub": "", "aud": q.get("service", [""])[0], "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": b64url(os.urandom(12)), "access": access}
        signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signing_input.encode(),
                             check=True, capture_output=True).stdout
        token = signing_input + "." + b64url(sig)
        body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", port), Handler).serve_forever()
