//! Twilio SMS status callbacks: `X-Twilio-Signature` is base64 of an HMAC (SHA-1 keyed with the
//! Auth Token, or SHA-256 keyed with a shared key when a Webhooks Rule says so) over the full
//! callback URL followed by every POST parameter, sorted by name, as name then value.

use hmac::{Hmac, KeyInit, Mac};

use super::{
    MessageKey, Outcome, Parsed, TWILIO_MESSAGE_ID_PARAM, WebhookError, WebhookEvent,
    decode_base64, sanitize_name,
};
use commlog::MessageId;

/// The hash of a Twilio signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TwilioAlgorithm {
    /// HMAC-SHA1 keyed with the Auth Token: the default.
    #[default]
    HmacSha1,
    /// HMAC-SHA256, used when a Webhooks Rule matches.
    HmacSha256,
}

impl TwilioAlgorithm {
    /// The algorithm named by the `X-Twilio-Webhooks-Signature-Settings` header (e.g.
    /// `key=…,algorithm=HMAC_SHA256`); SHA-1 when the header is absent or names no algorithm.
    pub fn from_settings_header(header: Option<&str>) -> Self {
        let Some(header) = header else {
            return TwilioAlgorithm::HmacSha1;
        };
        for part in header.split([',', ';']) {
            if let Some((name, value)) = part.split_once('=')
                && name.trim().eq_ignore_ascii_case("algorithm")
            {
                let value = value.trim();
                if value.eq_ignore_ascii_case("HMAC_SHA256") || value.eq_ignore_ascii_case("SHA256")
                {
                    return TwilioAlgorithm::HmacSha256;
                }
            }
        }
        TwilioAlgorithm::HmacSha1
    }
}

/// Verifies an HMAC-SHA1 `X-Twilio-Signature` (see [`verify_twilio_with`]).
pub fn verify_twilio(
    auth_token: &[u8],
    url: &str,
    params: &[(String, String)],
    signature_b64: &str,
) -> bool {
    verify_twilio_with(
        TwilioAlgorithm::HmacSha1,
        auth_token,
        url,
        params,
        signature_b64,
    )
}

/// Verifies `X-Twilio-Signature` against `url` (the public URL Twilio was given, with its query;
/// behind a proxy a configured base URL, not the `Host` header) and the decoded POST `params`.
///
/// As Twilio's own libraries do, the URL is also tried with its standard port (`:443` for
/// https, `:80` for http) added when absent, or removed when present. Comparison is
/// constant-time.
pub fn verify_twilio_with(
    algorithm: TwilioAlgorithm,
    key: &[u8],
    url: &str,
    params: &[(String, String)],
    signature_b64: &str,
) -> bool {
    let Some(signature) = decode_base64(signature_b64) else {
        return false;
    };
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut candidates = vec![url.to_owned()];
    if let Some(other) = with_or_without_standard_port(url) {
        candidates.push(other);
    }
    // Every candidate is checked, so the time spent does not depend on which one matched.
    let mut matched = false;
    for candidate in &candidates {
        matched |= match algorithm {
            TwilioAlgorithm::HmacSha1 => {
                check::<Hmac<sha1::Sha1>>(key, candidate, &sorted, &signature)
            }
            TwilioAlgorithm::HmacSha256 => {
                check::<Hmac<sha2::Sha256>>(key, candidate, &sorted, &signature)
            }
        };
    }
    matched
}

fn check<M: Mac + KeyInit>(
    key: &[u8],
    url: &str,
    params: &[&(String, String)],
    signature: &[u8],
) -> bool {
    if key.is_empty() {
        // An unset token must not make every signature computable.
        return false;
    }
    let Ok(mut mac) = <M as KeyInit>::new_from_slice(key) else {
        return false;
    };
    mac.update(url.as_bytes());
    for (name, value) in params {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac.verify_slice(signature).is_ok()
}

/// `url` with its standard port removed when present, or added when absent; `None` for other
/// schemes, other ports, or a URL without an authority.
fn with_or_without_standard_port(url: &str) -> Option<String> {
    let scheme_end = url.find("://")?;
    let scheme = &url[..scheme_end];
    let standard = if scheme.eq_ignore_ascii_case("https") {
        "443"
    } else if scheme.eq_ignore_ascii_case("http") {
        "80"
    } else {
        return None;
    };
    let authority_start = scheme_end + 3;
    let authority_end = url[authority_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| authority_start + i);
    let authority = &url[authority_start..authority_end];
    // The host starts after any user info; a port follows the last ':' after an IPv6 ']'.
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_and_port = &authority[host_start..];
    let after_brackets = host_and_port.rfind(']').map_or(0, |i| i + 1);
    let new_authority = match host_and_port[after_brackets..].rfind(':') {
        Some(colon) => {
            let colon = host_start + after_brackets + colon;
            if &authority[colon + 1..] != standard {
                return None;
            }
            authority[..colon].to_owned()
        }
        None => format!("{authority}:{standard}"),
    };
    Some(format!(
        "{}{}{}",
        &url[..authority_start],
        new_authority,
        &url[authority_end..]
    ))
}

/// Decodes an `application/x-www-form-urlencoded` body into the parameters the signature
/// covers.
pub fn twilio_form_params(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// Decodes the form `body`, verifies the signature over `url` and its parameters, and returns
/// the parameters for [`parse_twilio`]; nothing in them is interpreted before the signature
/// matches.
pub fn verify_twilio_form(
    algorithm: TwilioAlgorithm,
    key: &[u8],
    url: &str,
    body: &[u8],
    signature_b64: &str,
) -> Result<Vec<(String, String)>, WebhookError> {
    let params = twilio_form_params(body);
    if verify_twilio_with(algorithm, key, url, &params, signature_b64) {
        Ok(params)
    } else {
        Err(WebhookError::BadSignature)
    }
}

/// Turns a verified status callback into events: `delivered` is a delivery, `read` an open,
/// `undelivered` and `failed` a failure with reason `twilio_<ErrorCode>` (the status name when
/// there is no error code); every other status is ignored.
///
/// The message is the `cl` query parameter of `url` when it holds a commlog message id, else
/// `MessageSid` as an external id. Status callbacks carry no event time, so `at` is `None`.
pub fn parse_twilio(url: &str, params: &[(String, String)]) -> Result<Parsed, WebhookError> {
    let param = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    };
    let status = param("MessageStatus")
        .or_else(|| param("SmsStatus"))
        .ok_or_else(|| WebhookError::malformed("no MessageStatus"))?
        .to_ascii_lowercase();
    let message = match url_message_id(url) {
        Some(id) => MessageKey::Id(id),
        None => MessageKey::External(
            param("MessageSid")
                .or_else(|| param("SmsSid"))
                .ok_or_else(|| WebhookError::malformed("no MessageSid"))?
                .to_owned(),
        ),
    };
    let outcome = match status.as_str() {
        "delivered" => Some(Outcome::Delivered),
        "read" => Some(Outcome::Opened),
        "undelivered" | "failed" => Some(Outcome::Failed(match param("ErrorCode") {
            Some(code) => sanitize_name("twilio", code),
            None => sanitize_name("", &status),
        })),
        _ => None,
    };
    let mut parsed = Parsed::default();
    match outcome {
        Some(outcome) => parsed.events.push(WebhookEvent {
            message,
            outcome,
            at: None,
        }),
        None => parsed.ignored += 1,
    }
    Ok(parsed)
}

fn url_message_id(url: &str) -> Option<MessageId> {
    let query = url.split_once('?')?.1;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == TWILIO_MESSAGE_ID_PARAM)
        .and_then(|(_, value)| value.trim().parse::<u64>().ok())
        .map(MessageId)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_port_is_added_or_removed() {
        let cases = [
            ("https://a.com/x?y=1", Some("https://a.com:443/x?y=1")),
            ("https://a.com:443/x", Some("https://a.com/x")),
            ("http://a.com", Some("http://a.com:80")),
            ("http://a.com:80?q", Some("http://a.com?q")),
            ("https://a.com:8443/x", None),
            ("https://u:p@a.com/x", Some("https://u:p@a.com:443/x")),
            ("https://[::1]:443/x", Some("https://[::1]/x")),
            ("https://[::1]/x", Some("https://[::1]:443/x")),
            ("ftp://a.com/x", None),
            ("a.com/x", None),
        ];
        for (url, expected) in cases {
            assert_eq!(
                with_or_without_standard_port(url).as_deref(),
                expected,
                "{url}"
            );
        }
    }

    #[test]
    fn settings_header_names_the_algorithm() {
        use TwilioAlgorithm::*;
        assert_eq!(TwilioAlgorithm::from_settings_header(None), HmacSha1);
        assert_eq!(
            TwilioAlgorithm::from_settings_header(Some("key=KS123,algorithm=HMAC_SHA256")),
            HmacSha256
        );
        assert_eq!(
            TwilioAlgorithm::from_settings_header(Some("key=KS123, algorithm=hmac_sha256")),
            HmacSha256
        );
        assert_eq!(
            TwilioAlgorithm::from_settings_header(Some("key=KS123")),
            HmacSha1
        );
    }
}
