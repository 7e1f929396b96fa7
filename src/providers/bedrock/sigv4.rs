//! AWS Signature Version 4 for Bedrock requests, computed by the AWS SDK's own `aws-sigv4`
//! crate so the canonicalisation rules (double-encoded path, header normalisation) are AWS's,
//! not ours.
//!
//! The signature covers the exact body bytes and the headers listed by the caller (`host`,
//! `content-type`, any `x-amz-*` extra header), plus the `x-amz-date` and
//! `x-amz-security-token` headers the signer adds. Everything else the gateway sends
//! (`content-length`, `user-agent`) stays unsigned: SigV4 requires only `host` and the
//! `x-amz-*` headers to be signed, and leaving the rest out keeps a proxy that rewrites them from
//! breaking the signature.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

use crate::config::runtime::AwsCredentials;

/// The SigV4 signing name of the Bedrock runtime API (`bedrock-runtime` is only its host).
pub const SERVICE: &str = "bedrock";

/// A header the signer asks us to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeader {
    pub name: &'static str,
    pub value: String,
    /// Credentials (the session token, the authorization) must never reach a log line.
    pub sensitive: bool,
}

/// Signs one request at `time`. `path` is the path exactly as it goes on the wire (already
/// percent-encoded); `headers` are the headers to cover besides the ones the signer adds.
pub fn sign_at(
    creds: &AwsCredentials,
    method: &str,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    time: SystemTime,
) -> Result<Vec<SignedHeader>, String> {
    let identity: Identity = Credentials::new(
        creds.access_key_id.as_str(),
        creds.secret_access_key.as_str(),
        creds.session_token.clone(),
        None,
        "signalbox-config",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&creds.region)
        .name(SERVICE)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("SigV4 parameters: {e}"))?;
    // The scheme does not enter the signature; `host` comes from `headers`.
    let uri = format!("https://{authority}{path}");
    let request = SignableRequest::new(
        method,
        uri,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| format!("SigV4 request: {e}"))?;
    let (instructions, _signature) = sign(request, &params.into())
        .map_err(|e| format!("SigV4 signing: {e}"))?
        .into_parts();
    let (out, _params) = instructions.into_parts();
    Ok(out
        .into_iter()
        .map(|h| SignedHeader {
            name: h.name(),
            value: h.value().to_string(),
            sensitive: h.sensitive() || h.name() == "authorization",
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    // The expected values come from botocore's SigV4Auth for the same inputs:
    // `testdata/bedrock/sigv4_vector.py` (botocore 1.44.5) prints them.
    const BODY: &[u8] = br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"maxTokens":16}}"#;
    const HOST: &str = "bedrock-runtime.us-east-1.amazonaws.com";
    const PATH: &str = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse";

    fn creds(token: Option<&str>) -> AwsCredentials {
        AwsCredentials {
            region: "us-east-1".into(),
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: token.map(str::to_string),
        }
    }

    fn at_2024_05_01_noon() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_714_564_800)
    }

    fn get<'a>(h: &'a [SignedHeader], name: &str) -> Option<&'a SignedHeader> {
        h.iter().find(|x| x.name == name)
    }

    #[test]
    fn matches_botocore_without_session_token() {
        let h = sign_at(
            &creds(None),
            "POST",
            HOST,
            PATH,
            &[("host", HOST), ("content-type", "application/json")],
            BODY,
            at_2024_05_01_noon(),
        )
        .unwrap();
        assert_eq!(get(&h, "x-amz-date").unwrap().value, "20240501T120000Z");
        let auth = get(&h, "authorization").unwrap();
        assert!(auth.sensitive);
        assert_eq!(
            auth.value,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240501/us-east-1/bedrock/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=6d8b9dac4e3e7a805e20fcc3ee255892f787fea26227f4ab045c89771b608d39"
        );
        assert!(get(&h, "x-amz-security-token").is_none());
    }

    #[test]
    fn matches_botocore_with_session_token() {
        let h = sign_at(
            &creds(Some("FQoGZXIvYXdzEXAMPLETOKEN")),
            "POST",
            HOST,
            PATH,
            &[("host", HOST), ("content-type", "application/json")],
            BODY,
            at_2024_05_01_noon(),
        )
        .unwrap();
        let token = get(&h, "x-amz-security-token").unwrap();
        assert_eq!(token.value, "FQoGZXIvYXdzEXAMPLETOKEN");
        assert!(token.sensitive);
        assert_eq!(
            get(&h, "authorization").unwrap().value,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240501/us-east-1/bedrock/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, \
             Signature=8d00de16896b4696dd5eee870b58678de0192b54cebce9824ae0a568000f1500"
        );
    }

    #[test]
    fn body_and_path_are_covered() {
        let sig = |path: &str, body: &[u8]| {
            let h = sign_at(
                &creds(None),
                "POST",
                HOST,
                path,
                &[("host", HOST), ("content-type", "application/json")],
                body,
                at_2024_05_01_noon(),
            )
            .unwrap();
            get(&h, "authorization").unwrap().value.clone()
        };
        let base = sig(PATH, BODY);
        assert_ne!(base, sig(PATH, b"{}"));
        assert_ne!(
            base,
            sig(
                "/model/anthropic.claude-3-haiku-20240307-v1:0/converse",
                BODY
            )
        );
    }
}
