# Computes SigV4 reference signatures with botocore for the Bedrock codec's sigv4 test.
import datetime
from unittest import mock
import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

BODY = b'{"messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"maxTokens":16}}'
URL = "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
NOW = datetime.datetime(2024, 5, 1, 12, 0, 0)

class FixedDT(datetime.datetime):
    @classmethod
    def utcnow(cls):
        return NOW
    @classmethod
    def now(cls, tz=None):
        return NOW.replace(tzinfo=tz) if tz else NOW

for token in (None, "FQoGZXIvYXdzEXAMPLETOKEN"):
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    req = AWSRequest(method="POST", url=URL, data=BODY,
                     headers={"Content-Type": "application/json", "Host": "bedrock-runtime.us-east-1.amazonaws.com"})
    signer = botocore.auth.SigV4Auth(creds, "bedrock", "us-east-1")
    with mock.patch.object(botocore.auth.datetime, "datetime", FixedDT):
        signer.add_auth(req)
    print("token:", token)
    print(" canonical:", repr(signer.canonical_request(req)))
    for k in ("X-Amz-Date", "X-Amz-Security-Token", "Authorization"):
        print(" ", k, "=", req.headers.get(k))
