//! Webhook verification against the providers' published vectors, and each provider's
//! payload mapped to provider-neutral events.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, TimeZone, Utc};
use commlog::MessageId;
use commlog_server::webhooks::*;

fn flip_char(text: &str, index: usize) -> String {
    let mut bytes = text.as_bytes().to_vec();
    bytes[index] = if bytes[index] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

fn flip_byte(bytes: &[u8], index: usize) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    bytes[index] ^= 0x01;
    bytes
}

fn owned(params: &[(&str, &str)]) -> Vec<(String, String)> {
    params
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Twilio: the vector of Twilio's webhook security documentation.

const TWILIO_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
const TWILIO_TOKEN: &[u8] = b"12345";
const TWILIO_SIGNATURE: &str = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";
/// HMAC-SHA256 of the same bytes with the same key, computed with Python's `hmac`.
const TWILIO_SIGNATURE_SHA256: &str = "Rmm4Vzj+Ky7JGoWXMCsZDZuHDszLr9xvdbvitrDr4/M=";

fn twilio_params() -> Vec<(String, String)> {
    // Deliberately not sorted: the signature sorts by name.
    owned(&[
        ("To", "+18005551212"),
        ("Digits", "1234"),
        ("CallSid", "CA1234567890ABCDE"),
        ("From", "+12349013030"),
        ("Caller", "+12349013030"),
    ])
}

#[test]
fn twilio_vector_verifies() {
    assert!(verify_twilio(
        TWILIO_TOKEN,
        TWILIO_URL,
        &twilio_params(),
        TWILIO_SIGNATURE
    ));
}

#[test]
fn twilio_vector_fails_on_any_change() {
    let params = twilio_params();
    // A byte of a parameter value (the body).
    let mut changed = params.clone();
    changed[1].1 = "1235".into();
    assert!(!verify_twilio(
        TWILIO_TOKEN,
        TWILIO_URL,
        &changed,
        TWILIO_SIGNATURE
    ));
    // A parameter name.
    let mut changed = params.clone();
    changed[1].0 = "Digitz".into();
    assert!(!verify_twilio(
        TWILIO_TOKEN,
        TWILIO_URL,
        &changed,
        TWILIO_SIGNATURE
    ));
    // A parameter added.
    let mut changed = params.clone();
    changed.push(("X".into(), "".into()));
    assert!(!verify_twilio(
        TWILIO_TOKEN,
        TWILIO_URL,
        &changed,
        TWILIO_SIGNATURE
    ));
    // A byte of the signature, of the URL, of the token.
    for i in 0..TWILIO_SIGNATURE.len() - 1 {
        assert!(
            !verify_twilio(
                TWILIO_TOKEN,
                TWILIO_URL,
                &params,
                &flip_char(TWILIO_SIGNATURE, i)
            ),
            "signature byte {i}"
        );
    }
    let signature = STANDARD.decode(TWILIO_SIGNATURE).unwrap();
    for i in 0..signature.len() {
        let changed = STANDARD.encode(flip_byte(&signature, i));
        assert!(!verify_twilio(TWILIO_TOKEN, TWILIO_URL, &params, &changed));
    }
    for i in 0..TWILIO_URL.len() {
        let url = String::from_utf8(flip_byte(TWILIO_URL.as_bytes(), i)).unwrap();
        assert!(
            !verify_twilio(TWILIO_TOKEN, &url, &params, TWILIO_SIGNATURE),
            "url byte {i}"
        );
    }
    assert!(!verify_twilio(
        b"12346",
        TWILIO_URL,
        &params,
        TWILIO_SIGNATURE
    ));
    // Truncated or empty signatures, and garbage.
    assert!(!verify_twilio(
        TWILIO_TOKEN,
        TWILIO_URL,
        &params,
        &TWILIO_SIGNATURE[..8]
    ));
    assert!(!verify_twilio(TWILIO_TOKEN, TWILIO_URL, &params, ""));
    assert!(!verify_twilio(TWILIO_TOKEN, TWILIO_URL, &params, "%%%"));
}

#[test]
fn twilio_empty_token_verifies_nothing() {
    use hmac::{Hmac, KeyInit, Mac};
    let params = twilio_params();
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(b"").unwrap();
    mac.update(TWILIO_URL.as_bytes());
    let mut sorted = params.clone();
    sorted.sort();
    for (name, value) in &sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    let forged = STANDARD.encode(mac.finalize().into_bytes());
    assert!(!verify_twilio(b"", TWILIO_URL, &params, &forged));
}

#[test]
fn twilio_url_with_or_without_standard_port() {
    let params = twilio_params();
    // Signed without the port, received with it.
    assert!(verify_twilio(
        TWILIO_TOKEN,
        "https://mycompany.com:443/myapp.php?foo=1&bar=2",
        &params,
        TWILIO_SIGNATURE
    ));
    // Signed with the port (Python hmac over the URL with ":443"), received without it.
    assert!(verify_twilio(
        TWILIO_TOKEN,
        TWILIO_URL,
        &params,
        "EpDEmp1PyjDYp77YxYU3GILBWzE="
    ));
    // Another port is another URL; so is the other scheme's standard port.
    assert!(!verify_twilio(
        TWILIO_TOKEN,
        "https://mycompany.com:8443/myapp.php?foo=1&bar=2",
        &params,
        TWILIO_SIGNATURE
    ));
    assert!(!verify_twilio(
        TWILIO_TOKEN,
        "https://mycompany.com:80/myapp.php?foo=1&bar=2",
        &params,
        TWILIO_SIGNATURE
    ));
}

#[test]
fn twilio_sha256_variant() {
    let params = twilio_params();
    let sha256 = TwilioAlgorithm::from_settings_header(Some("key=KS123,algorithm=HMAC_SHA256"));
    assert_eq!(sha256, TwilioAlgorithm::HmacSha256);
    assert!(verify_twilio_with(
        sha256,
        TWILIO_TOKEN,
        TWILIO_URL,
        &params,
        TWILIO_SIGNATURE_SHA256
    ));
    // Each hash only accepts its own signature.
    assert!(!verify_twilio_with(
        sha256,
        TWILIO_TOKEN,
        TWILIO_URL,
        &params,
        TWILIO_SIGNATURE
    ));
    assert!(!verify_twilio(
        TWILIO_TOKEN,
        TWILIO_URL,
        &params,
        TWILIO_SIGNATURE_SHA256
    ));
    let mut changed = params.clone();
    changed[0].1 = "+18005551213".into();
    assert!(!verify_twilio_with(
        sha256,
        TWILIO_TOKEN,
        TWILIO_URL,
        &changed,
        TWILIO_SIGNATURE_SHA256
    ));
}

#[test]
fn twilio_form_body_is_decoded_then_verified() {
    let body = b"To=%2B18005551212&Digits=1234&CallSid=CA1234567890ABCDE&From=%2B12349013030&Caller=%2B12349013030";
    let params = verify_twilio_form(
        TwilioAlgorithm::HmacSha1,
        TWILIO_TOKEN,
        TWILIO_URL,
        body,
        TWILIO_SIGNATURE,
    )
    .unwrap();
    assert_eq!(params.len(), 5);
    for i in 0..body.len() {
        let changed = flip_byte(body, i);
        assert_eq!(
            verify_twilio_form(
                TwilioAlgorithm::HmacSha1,
                TWILIO_TOKEN,
                TWILIO_URL,
                &changed,
                TWILIO_SIGNATURE
            ),
            Err(WebhookError::BadSignature),
            "body byte {i}"
        );
    }
}

fn twilio_status(url: &str, params: &[(&str, &str)]) -> Parsed {
    parse_twilio(url, &owned(params)).unwrap()
}

#[test]
fn twilio_statuses_map() {
    let url = "https://example.com/hooks/twilio";
    let sid = MessageKey::External("SM123".into());
    let event = |outcome| WebhookEvent {
        message: sid.clone(),
        outcome,
        at: None,
    };
    let parsed = twilio_status(
        url,
        &[("MessageSid", "SM123"), ("MessageStatus", "delivered")],
    );
    assert_eq!(parsed.events, vec![event(Outcome::Delivered)]);
    let parsed = twilio_status(url, &[("MessageSid", "SM123"), ("MessageStatus", "read")]);
    assert_eq!(parsed.events, vec![event(Outcome::Opened)]);
    let parsed = twilio_status(
        url,
        &[
            ("MessageSid", "SM123"),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", "30003"),
        ],
    );
    assert_eq!(
        parsed.events,
        vec![event(Outcome::Failed("twilio_30003".into()))]
    );
    let parsed = twilio_status(url, &[("MessageSid", "SM123"), ("MessageStatus", "failed")]);
    assert_eq!(parsed.events, vec![event(Outcome::Failed("failed".into()))]);
    let parsed = twilio_status(
        url,
        &[("MessageSid", "SM123"), ("MessageStatus", "undelivered")],
    );
    assert_eq!(
        parsed.events,
        vec![event(Outcome::Failed("undelivered".into()))]
    );
    for status in [
        "queued",
        "sending",
        "sent",
        "accepted",
        "scheduled",
        "canceled",
        "partially_delivered",
        "something_new",
    ] {
        let parsed = twilio_status(url, &[("MessageSid", "SM123"), ("MessageStatus", status)]);
        assert_eq!(parsed.events, vec![], "{status}");
        assert_eq!(parsed.ignored, 1, "{status}");
    }
    // The older SmsSid / SmsStatus names.
    let parsed = twilio_status(url, &[("SmsSid", "SM123"), ("SmsStatus", "delivered")]);
    assert_eq!(parsed.events, vec![event(Outcome::Delivered)]);
}

#[test]
fn twilio_message_id_from_callback_url() {
    let url = "https://example.com/hooks/twilio?cl=42";
    let params = [
        ("MessageSid", "SM123"),
        ("MessageStatus", "undelivered"),
        ("ErrorCode", "30003"),
        ("AccountSid", "AC1"),
    ];
    // Signed by Python's hmac over the URL with its query, then the sorted parameters.
    let signature = "Rtlc6Gz/YouulhQeSGpshEMeyoI=";
    assert!(verify_twilio(b"token", url, &owned(&params), signature));
    assert!(!verify_twilio(
        b"token",
        "https://example.com/hooks/twilio?cl=43",
        &owned(&params),
        signature
    ));
    let parsed = twilio_status(url, &params);
    assert_eq!(
        parsed.events,
        vec![WebhookEvent {
            message: MessageKey::Id(MessageId(42)),
            outcome: Outcome::Failed("twilio_30003".into()),
            at: None,
        }]
    );
    // Not a number: the sid.
    let parsed = twilio_status("https://example.com/hooks/twilio?cl=x", &params);
    assert_eq!(
        parsed.events[0].message,
        MessageKey::External("SM123".into())
    );
}

#[test]
fn twilio_malformed() {
    let url = "https://example.com/hooks/twilio";
    assert!(matches!(
        parse_twilio(url, &owned(&[("MessageSid", "SM1")])),
        Err(WebhookError::Malformed(_))
    ));
    assert!(matches!(
        parse_twilio(url, &owned(&[("MessageStatus", "delivered")])),
        Err(WebhookError::Malformed(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// SendGrid: the vector of sendgrid-nodejs `packages/eventwebhook/src/eventwebhook.spec.js`
// (the same in the Java, Python, Ruby, PHP and Go libraries).

const SENDGRID_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==";
const SENDGRID_OTHER_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA==";
const SENDGRID_SIGNATURE: &str = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0=";
const SENDGRID_TIMESTAMP: &str = "1588788367";
const SENDGRID_PAYLOAD: &[u8] =
    br#"{"category":"example_payload","event":"test_event","message_id":"message_id"}"#;

#[test]
fn sendgrid_vector_verifies() {
    assert!(verify_sendgrid(
        SENDGRID_KEY,
        SENDGRID_TIMESTAMP,
        SENDGRID_PAYLOAD,
        SENDGRID_SIGNATURE
    ));
    assert_eq!(check_sendgrid_key(SENDGRID_KEY), Ok(()));
}

#[test]
fn sendgrid_key_as_pem_or_split_across_lines() {
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----\n",
        &SENDGRID_KEY[..64],
        &SENDGRID_KEY[64..]
    );
    assert!(verify_sendgrid(
        &pem,
        SENDGRID_TIMESTAMP,
        SENDGRID_PAYLOAD,
        SENDGRID_SIGNATURE
    ));
    let split = format!("{}\n    {}", &SENDGRID_KEY[..55], &SENDGRID_KEY[55..]);
    assert!(verify_sendgrid(
        &split,
        SENDGRID_TIMESTAMP,
        SENDGRID_PAYLOAD,
        SENDGRID_SIGNATURE
    ));
}

#[test]
fn sendgrid_vector_fails_on_any_change() {
    let verify = |key: &str, timestamp: &str, body: &[u8], signature: &str| {
        verify_sendgrid(key, timestamp, body, signature)
    };
    for i in 0..SENDGRID_PAYLOAD.len() {
        let body = flip_byte(SENDGRID_PAYLOAD, i);
        assert!(
            !verify(SENDGRID_KEY, SENDGRID_TIMESTAMP, &body, SENDGRID_SIGNATURE),
            "body byte {i}"
        );
    }
    assert!(!verify(
        SENDGRID_KEY,
        SENDGRID_TIMESTAMP,
        b"payload",
        SENDGRID_SIGNATURE
    ));
    for i in 0..SENDGRID_TIMESTAMP.len() {
        let timestamp = String::from_utf8(flip_byte(SENDGRID_TIMESTAMP.as_bytes(), i)).unwrap();
        assert!(
            !verify(
                SENDGRID_KEY,
                &timestamp,
                SENDGRID_PAYLOAD,
                SENDGRID_SIGNATURE
            ),
            "timestamp byte {i}"
        );
    }
    // The libraries' own "bad timestamp" case.
    assert!(!verify(
        SENDGRID_KEY,
        "1388788367",
        SENDGRID_PAYLOAD,
        SENDGRID_SIGNATURE
    ));
    let signature = STANDARD.decode(SENDGRID_SIGNATURE).unwrap();
    for i in 0..signature.len() {
        let changed = STANDARD.encode(flip_byte(&signature, i));
        assert!(
            !verify(SENDGRID_KEY, SENDGRID_TIMESTAMP, SENDGRID_PAYLOAD, &changed),
            "signature byte {i}"
        );
    }
    // The libraries' own "bad signature" case.
    assert!(!verify(
        SENDGRID_KEY,
        SENDGRID_TIMESTAMP,
        SENDGRID_PAYLOAD,
        "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH3j/0="
    ));
    assert!(!verify(
        SENDGRID_OTHER_KEY,
        SENDGRID_TIMESTAMP,
        SENDGRID_PAYLOAD,
        SENDGRID_SIGNATURE
    ));
    assert!(!verify(
        SENDGRID_KEY,
        SENDGRID_TIMESTAMP,
        SENDGRID_PAYLOAD,
        ""
    ));
    assert!(!verify(
        "not a key",
        SENDGRID_TIMESTAMP,
        SENDGRID_PAYLOAD,
        SENDGRID_SIGNATURE
    ));
    assert_eq!(check_sendgrid_key("not a key"), Err(WebhookError::BadKey));
    assert_eq!(check_sendgrid_key("AAAA"), Err(WebhookError::BadKey));
}

#[test]
fn sendgrid_accepts_the_high_s_form_of_a_signature() {
    // ECDSA signatures (r, s) and (r, n - s) are both valid; signers other than ours need not
    // normalize s.
    use p256::ecdsa::Signature;
    let der = STANDARD.decode(SENDGRID_SIGNATURE).unwrap();
    let signature = Signature::from_der(&der).unwrap();
    let (r, s) = signature.split_scalars();
    let high = Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
    assert_ne!(high, signature);
    let high_b64 = STANDARD.encode(high.to_der().as_bytes());
    assert!(verify_sendgrid(
        SENDGRID_KEY,
        SENDGRID_TIMESTAMP,
        SENDGRID_PAYLOAD,
        &high_b64
    ));
}

#[test]
fn sendgrid_events_map() {
    let body = br#"[
      {"email":"a@example.com","timestamp":1700000000,"event":"processed","sg_message_id":"abc.filter1","sg_event_id":"e0"},
      {"email":"a@example.com","timestamp":1700000001,"event":"delivered","sg_message_id":"abc.filterdrecv-1.2","response":"250 OK"},
      {"email":"a@example.com","timestamp":1700000002,"event":"open","sg_message_id":"abc.x","sg_machine_open":false,"useragent":"Mozilla"},
      {"email":"a@example.com","timestamp":1700000003,"event":"open","sg_message_id":"abc.x","sg_machine_open":true},
      {"email":"a@example.com","timestamp":1700000004,"event":"click","sg_message_id":"abc.x","url":"https://example.com"},
      {"email":"b@example.com","timestamp":1700000005,"event":"bounce","sg_message_id":"def.x","type":"bounce","reason":"550 5.1.1 unknown user","status":"5.1.1"},
      {"email":"b@example.com","timestamp":1700000006,"event":"bounce","sg_message_id":"def.x","type":"blocked","reason":"blocked by policy"},
      {"email":"c@example.com","timestamp":1700000007,"event":"dropped","sg_message_id":"ghi.x","reason":"Bounced Address"},
      {"email":"c@example.com","timestamp":1700000008,"event":"dropped","sg_message_id":"ghi.x"},
      {"email":"a@example.com","timestamp":1700000009,"event":"deferred","sg_message_id":"abc.x","attempt":"1"},
      {"email":"a@example.com","timestamp":1700000010,"event":"spamreport","sg_message_id":"abc.x"},
      {"email":"a@example.com","timestamp":1700000011,"event":"unsubscribe","sg_message_id":"abc.x"},
      {"email":"a@example.com","timestamp":1700000012,"event":"a_future_event","sg_message_id":"abc.x"},
      {"email":"a@example.com","timestamp":1700000013,"event":"delivered"},
      {"email":"a@example.com","timestamp":1700000014,"sg_message_id":"abc.x"},
      "not an object"
    ]"#;
    let parsed = parse_sendgrid(body).unwrap();
    let at = |s: i64| Some(Utc.timestamp_opt(s, 0).unwrap());
    let ext = |id: &str| MessageKey::External(id.into());
    let expected = vec![
        WebhookEvent {
            message: ext("abc"),
            outcome: Outcome::Delivered,
            at: at(1_700_000_001),
        },
        WebhookEvent {
            message: ext("abc"),
            outcome: Outcome::Opened,
            at: at(1_700_000_002),
        },
        WebhookEvent {
            message: ext("abc"),
            outcome: Outcome::Action("clicked_link".into()),
            at: at(1_700_000_004),
        },
        WebhookEvent {
            message: ext("def"),
            outcome: Outcome::Failed("bounce".into()),
            at: at(1_700_000_005),
        },
        WebhookEvent {
            message: ext("def"),
            outcome: Outcome::Failed("bounce_blocked".into()),
            at: at(1_700_000_006),
        },
        WebhookEvent {
            message: ext("ghi"),
            outcome: Outcome::Failed("dropped_bounced_address".into()),
            at: at(1_700_000_007),
        },
        WebhookEvent {
            message: ext("ghi"),
            outcome: Outcome::Failed("dropped".into()),
            at: at(1_700_000_008),
        },
    ];
    assert_eq!(parsed.events, expected);
    assert_eq!(parsed.machine_opens, 1);
    // processed, deferred, spamreport, unsubscribe, a_future_event, delivered without an id,
    // no event name, not an object.
    assert_eq!(parsed.ignored, 8);
}

#[test]
fn sendgrid_custom_args_name_the_commlog_message() {
    let body = br#"[
      {"event":"delivered","timestamp":1700000000,"sg_message_id":"abc.x","commlog_message_id":"42"},
      {"event":"open","timestamp":1700000001,"sg_message_id":"abc.x","custom_args":{"commlog_message_id":43}},
      {"event":"click","timestamp":1700000002,"sg_message_id":"abc.x","commlog_message_id":"not a number"}
    ]"#;
    let parsed = parse_sendgrid(body).unwrap();
    let keys: Vec<_> = parsed.events.iter().map(|e| e.message.clone()).collect();
    assert_eq!(
        keys,
        vec![
            MessageKey::Id(MessageId(42)),
            MessageKey::Id(MessageId(43)),
            MessageKey::External("abc".into()),
        ]
    );
}

#[test]
fn sendgrid_malformed() {
    for body in [
        &b""[..],
        b"{}",
        b"[",
        b"{\"event\":\"delivered\"}",
        b"not json",
    ] {
        assert!(
            matches!(parse_sendgrid(body), Err(WebhookError::Malformed(_))),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert_eq!(parse_sendgrid(b"[]").unwrap(), Parsed::default());
}

#[test]
fn sendgrid_reasons_are_valid_names() {
    let long = "X".repeat(200);
    let body = format!(
        r#"[{{"event":"dropped","sg_message_id":"a","reason":"{long}"}},
            {{"event":"dropped","sg_message_id":"a","reason":"Ünïcode — spam!!"}},
            {{"event":"bounce","sg_message_id":"a","type":"???"}}]"#
    );
    let parsed = parse_sendgrid(body.as_bytes()).unwrap();
    for event in &parsed.events {
        let Outcome::Failed(reason) = &event.outcome else {
            panic!("{event:?}");
        };
        commlog::validate_name("reason", reason).unwrap();
    }
    assert_eq!(
        parsed.events[1].outcome,
        Outcome::Failed("dropped_n_code_spam".into())
    );
    assert_eq!(parsed.events[2].outcome, Outcome::Failed("bounce".into()));
}

// ---------------------------------------------------------------------------------------------
// Resend (Svix): the vector of Svix's manual verification documentation.

const SVIX_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SVIX_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SVIX_TIMESTAMP: &str = "1614265330";
const SVIX_BODY: &[u8] = br#"{"test": 2432232314}"#;
const SVIX_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

fn svix_now() -> DateTime<Utc> {
    Utc.timestamp_opt(1_614_265_330, 0).unwrap()
}

#[test]
fn svix_vector_verifies() {
    assert_eq!(
        verify_svix(
            SVIX_SECRET,
            SVIX_ID,
            SVIX_TIMESTAMP,
            SVIX_BODY,
            SVIX_SIGNATURE,
            svix_now()
        ),
        Ok(())
    );
    // The secret without its prefix.
    assert_eq!(
        verify_svix(
            &SVIX_SECRET["whsec_".len()..],
            SVIX_ID,
            SVIX_TIMESTAMP,
            SVIX_BODY,
            SVIX_SIGNATURE,
            svix_now()
        ),
        Ok(())
    );
    assert_eq!(check_svix_secret(SVIX_SECRET), Ok(()));
}

#[test]
fn svix_several_signatures_any_match() {
    let other = "v1,bm90IHRoZSBzaWduYXR1cmUgb2YgdGhpcyBtZXNzYWdlISE=";
    for header in [
        format!("{other} {SVIX_SIGNATURE}"),
        format!("{SVIX_SIGNATURE} {other}"),
        format!("v1a,c29tZSBlZDI1NTE5 {SVIX_SIGNATURE}"),
        format!("garbage {SVIX_SIGNATURE}"),
    ] {
        assert_eq!(
            verify_svix(
                SVIX_SECRET,
                SVIX_ID,
                SVIX_TIMESTAMP,
                SVIX_BODY,
                &header,
                svix_now()
            ),
            Ok(()),
            "{header}"
        );
    }
    // The right signature under another version is no match.
    let wrong_version = SVIX_SIGNATURE.replacen("v1,", "v2,", 1);
    assert_eq!(
        verify_svix(
            SVIX_SECRET,
            SVIX_ID,
            SVIX_TIMESTAMP,
            SVIX_BODY,
            &format!("{other} {wrong_version}"),
            svix_now()
        ),
        Err(WebhookError::BadSignature)
    );
}

#[test]
fn svix_vector_fails_on_any_change() {
    let verify = |id: &str, timestamp: &str, body: &[u8], signature: &str| {
        verify_svix(SVIX_SECRET, id, timestamp, body, signature, svix_now())
    };
    for i in 0..SVIX_BODY.len() {
        let body = flip_byte(SVIX_BODY, i);
        assert_eq!(
            verify(SVIX_ID, SVIX_TIMESTAMP, &body, SVIX_SIGNATURE),
            Err(WebhookError::BadSignature),
            "body byte {i}"
        );
    }
    for i in 0..SVIX_ID.len() {
        let id = String::from_utf8(flip_byte(SVIX_ID.as_bytes(), i)).unwrap();
        assert_eq!(
            verify(&id, SVIX_TIMESTAMP, SVIX_BODY, SVIX_SIGNATURE),
            Err(WebhookError::BadSignature),
            "id byte {i}"
        );
    }
    // The last digit: one second off, within the tolerance, so only the signature refuses it.
    assert_eq!(
        verify(SVIX_ID, "1614265331", SVIX_BODY, SVIX_SIGNATURE),
        Err(WebhookError::BadSignature)
    );
    let signature = STANDARD.decode(&SVIX_SIGNATURE[3..]).unwrap();
    for i in 0..signature.len() {
        let changed = format!("v1,{}", STANDARD.encode(flip_byte(&signature, i)));
        assert_eq!(
            verify(SVIX_ID, SVIX_TIMESTAMP, SVIX_BODY, &changed),
            Err(WebhookError::BadSignature),
            "signature byte {i}"
        );
    }
    for header in [
        "",
        "v1,",
        "v1,%%%",
        "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    ] {
        assert_eq!(
            verify(SVIX_ID, SVIX_TIMESTAMP, SVIX_BODY, header),
            Err(WebhookError::BadSignature),
            "{header:?}"
        );
    }
    // Another secret.
    assert_eq!(
        verify_svix(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSx",
            SVIX_ID,
            SVIX_TIMESTAMP,
            SVIX_BODY,
            SVIX_SIGNATURE,
            svix_now()
        ),
        Err(WebhookError::BadSignature)
    );
}

#[test]
fn svix_timestamp_tolerance() {
    let at = |offset: i64| svix_now() + chrono::Duration::seconds(offset);
    let verify = |now| {
        verify_svix(
            SVIX_SECRET,
            SVIX_ID,
            SVIX_TIMESTAMP,
            SVIX_BODY,
            SVIX_SIGNATURE,
            now,
        )
    };
    assert_eq!(verify(at(300)), Ok(()));
    assert_eq!(verify(at(-300)), Ok(()));
    assert_eq!(verify(at(301)), Err(WebhookError::StaleTimestamp));
    assert_eq!(verify(at(-301)), Err(WebhookError::StaleTimestamp));
    assert_eq!(verify(Utc::now()), Err(WebhookError::StaleTimestamp));
    // Timestamps whose distance from now does not fit an i64 are the farthest of all.
    let now = svix_now().timestamp();
    for timestamp in [i64::MIN, now - i64::MAX, now - i64::MAX - 1] {
        assert_eq!(
            verify_svix(
                SVIX_SECRET,
                SVIX_ID,
                &timestamp.to_string(),
                SVIX_BODY,
                SVIX_SIGNATURE,
                svix_now()
            ),
            Err(WebhookError::StaleTimestamp),
            "{timestamp}"
        );
    }
    for timestamp in ["", "abc", "1614265330.5", "99999999999999999999"] {
        assert_eq!(
            verify_svix(
                SVIX_SECRET,
                SVIX_ID,
                timestamp,
                SVIX_BODY,
                SVIX_SIGNATURE,
                svix_now()
            ),
            Err(WebhookError::BadSignature),
            "{timestamp:?}"
        );
    }
}

#[test]
fn svix_bad_secret_is_a_configuration_error() {
    assert_eq!(
        verify_svix(
            "whsec_%%%",
            SVIX_ID,
            SVIX_TIMESTAMP,
            SVIX_BODY,
            SVIX_SIGNATURE,
            svix_now()
        ),
        Err(WebhookError::BadKey)
    );
    assert_eq!(check_svix_secret("whsec_"), Err(WebhookError::BadKey));
    assert_eq!(WebhookError::BadKey.http_status(), 500);
}

fn resend_event(kind: &str, data_extra: &str) -> Vec<u8> {
    format!(
        r#"{{"type":"{kind}","created_at":"2024-02-22T23:41:12.126Z","data":{{"created_at":"2024-02-22T23:41:11.894719+00:00","email_id":"56761188-7520-42d8-8898-ff6fc54ce618","from":"Acme <onboarding@resend.dev>","to":["delivered@resend.dev"],"subject":"Sending this example"{data_extra}}}}}"#
    )
    .into_bytes()
}

#[test]
fn resend_events_map() {
    let at = Some(
        DateTime::parse_from_rfc3339("2024-02-22T23:41:12.126Z")
            .unwrap()
            .with_timezone(&Utc),
    );
    let message = MessageKey::External("56761188-7520-42d8-8898-ff6fc54ce618".into());
    let cases = [
        ("email.delivered", "", Outcome::Delivered),
        ("email.opened", "", Outcome::Opened),
        (
            "email.clicked",
            r#","click":{"link":"https://resend.com","timestamp":"2024-11-24T05:00:57.163Z"}"#,
            Outcome::Action("clicked_link".into()),
        ),
        ("email.bounced", "", Outcome::Failed("bounced".into())),
        (
            "email.bounced",
            r#","bounce":{"message":"The recipient's email address is on the suppression list","subType":"Suppressed","type":"Permanent"}"#,
            Outcome::Failed("bounced_permanent".into()),
        ),
    ];
    for (kind, extra, outcome) in cases {
        let parsed = parse_resend(&resend_event(kind, extra)).unwrap();
        assert_eq!(
            parsed,
            Parsed {
                events: vec![WebhookEvent {
                    message: message.clone(),
                    outcome,
                    at,
                }],
                ignored: 0,
                machine_opens: 0,
            },
            "{kind}"
        );
    }
    for kind in [
        "email.sent",
        "email.delivery_delayed",
        "email.complained",
        "email.scheduled",
        "contact.created",
        "email.something_new",
    ] {
        let parsed = parse_resend(&resend_event(kind, "")).unwrap();
        assert_eq!(parsed.events, vec![], "{kind}");
        assert_eq!(parsed.ignored, 1, "{kind}");
    }
}

#[test]
fn resend_tags_name_the_commlog_message() {
    let parsed = parse_resend(&resend_event(
        "email.delivered",
        r#","tags":{"commlog_message_id":"42"}"#,
    ))
    .unwrap();
    assert_eq!(parsed.events[0].message, MessageKey::Id(MessageId(42)));
    let parsed = parse_resend(&resend_event(
        "email.delivered",
        r#","tags":[{"name":"commlog_message_id","value":"43"}]"#,
    ))
    .unwrap();
    assert_eq!(parsed.events[0].message, MessageKey::Id(MessageId(43)));
}

#[test]
fn resend_times_and_malformed() {
    let body = br#"{"type":"email.delivered","created_at":"2024-02-22 23:41:12.126+00:00","data":{"email_id":"e1"}}"#;
    let parsed = parse_resend(body).unwrap();
    assert_eq!(
        parsed.events[0].at,
        Some(
            Utc.with_ymd_and_hms(2024, 2, 22, 23, 41, 12).unwrap()
                + chrono::Duration::milliseconds(126)
        )
    );
    let body = br#"{"type":"email.delivered","created_at":"yesterday","data":{"email_id":"e1"}}"#;
    assert_eq!(parse_resend(body).unwrap().events[0].at, None);
    let body = br#"{"type":"email.delivered","data":{}}"#;
    assert_eq!(parse_resend(body).unwrap().ignored, 1);
    for body in [&b""[..], b"[]", b"{}", b"{\"type\":1}", b"not json"] {
        assert!(
            matches!(parse_resend(body), Err(WebhookError::Malformed(_))),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Shared.

#[test]
fn errors_map_to_http_statuses_and_show_no_secret() {
    assert_eq!(WebhookError::BadSignature.http_status(), 401);
    assert_eq!(WebhookError::StaleTimestamp.http_status(), 401);
    assert_eq!(WebhookError::Malformed("x".into()).http_status(), 400);
    let errors = [
        verify_svix(
            SVIX_SECRET,
            SVIX_ID,
            SVIX_TIMESTAMP,
            b"x",
            SVIX_SIGNATURE,
            svix_now(),
        )
        .unwrap_err(),
        verify_svix(
            "whsec_%%%",
            SVIX_ID,
            SVIX_TIMESTAMP,
            SVIX_BODY,
            SVIX_SIGNATURE,
            svix_now(),
        )
        .unwrap_err(),
        parse_sendgrid(b"{\"secret\":\"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"}").unwrap_err(),
        parse_sendgrid(b"\"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"").unwrap_err(),
        parse_resend(b"\"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"").unwrap_err(),
        parse_resend(b"{\"type\":\"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\",\"data\":1").unwrap_err(),
    ];
    for error in errors {
        for text in [error.to_string(), format!("{error:?}")] {
            assert!(!text.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "{text}");
            assert!(!text.contains("g0hM9SsE"), "{text}");
        }
    }
}

#[test]
fn sanitized_names_are_valid() {
    let cases = [
        ("dropped", "Bounced Address", "dropped_bounced_address"),
        (
            "dropped",
            "Invalid SMTPAPI header",
            "dropped_invalid_smtpapi_header",
        ),
        ("twilio", "30003", "twilio_30003"),
        ("bounced", "", "bounced"),
        ("bounced", "!!!", "bounced"),
        ("", "Failed", "failed"),
        ("", "  ", "unknown"),
        ("x", "a__b  c.d-e", "x_a_b_c.d-e"),
    ];
    for (prefix, raw, expected) in cases {
        assert_eq!(sanitize_name(prefix, raw), expected, "{prefix:?} {raw:?}");
    }
    for raw in [
        "A".repeat(100),
        "é".repeat(100),
        format!("{}!", "a".repeat(62)),
    ] {
        let name = sanitize_name("dropped", &raw);
        commlog::validate_name("reason", &name).unwrap();
        assert!(name.len() <= 64);
    }
}

#[test]
fn events_apply_to_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = commlog::Store::open(dir.path()).unwrap();
    let sms = store
        .track_message_sent(1, commlog::Channel::Sms, "low_balance", 0.01)
        .unwrap();
    let email = store
        .track_message_sent(2, commlog::Channel::Email, "weekly_digest", 0.0)
        .unwrap();
    let failed = parse_twilio(
        "https://example.com/hooks/twilio",
        &owned(&[
            ("MessageSid", "SM1"),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", "30003"),
        ]),
    )
    .unwrap();
    let message = failed.events[0].apply(&store, sms.id).unwrap();
    assert_eq!(message.status, commlog::Status::Failed);

    let body = format!(
        r#"[{{"event":"delivered","sg_message_id":"a.b","commlog_message_id":"{id}"}},
            {{"event":"open","sg_message_id":"a.b","commlog_message_id":"{id}"}},
            {{"event":"click","sg_message_id":"a.b","commlog_message_id":"{id}"}}]"#,
        id = email.id.0
    );
    let parsed = parse_sendgrid(body.as_bytes()).unwrap();
    let mut last = None;
    for event in &parsed.events {
        let MessageKey::Id(id) = event.message else {
            panic!("{event:?}");
        };
        last = Some(event.apply(&store, id).unwrap());
    }
    assert_eq!(last.unwrap().status, commlog::Status::Clicked);
}

#[test]
fn sendgrid_signed_batch_end_to_end() {
    // A key pair from a fixed scalar, standing in for SendGrid's: sign a realistic batch as
    // SendGrid does (timestamp then body), verify with the SubjectPublicKeyInfo DER in base64,
    // then parse.
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::{Signature, SigningKey};
    use p256::pkcs8::EncodePublicKey;
    let signing = SigningKey::from_slice(&[7u8; 32]).unwrap();
    let public = signing.verifying_key().to_public_key_der().unwrap();
    let public_b64 = STANDARD.encode(public.as_bytes());
    let timestamp = "1700000100";
    let body = br#"[{"email":"a@example.com","timestamp":1700000000,"smtp-id":"<x@y>","event":"delivered","category":["digest"],"sg_event_id":"e1","sg_message_id":"14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0","response":"250 OK","commlog_message_id":"7"},{"email":"a@example.com","timestamp":1700000050,"event":"open","sg_machine_open":true,"sg_event_id":"e2","sg_message_id":"14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"}]"#;
    let mut signed = timestamp.as_bytes().to_vec();
    signed.extend_from_slice(body);
    let signature: Signature = signing.sign(&signed);
    let signature_b64 = STANDARD.encode(signature.to_der().as_bytes());
    assert!(verify_sendgrid(
        &public_b64,
        timestamp,
        body,
        &signature_b64
    ));
    assert!(!verify_sendgrid(
        &public_b64,
        "1700000101",
        body,
        &signature_b64
    ));
    assert!(!verify_sendgrid(
        SENDGRID_KEY,
        timestamp,
        body,
        &signature_b64
    ));
    let parsed = parse_sendgrid(body).unwrap();
    assert_eq!(
        parsed.events,
        vec![WebhookEvent {
            message: MessageKey::Id(MessageId(7)),
            outcome: Outcome::Delivered,
            at: Some(Utc.timestamp_opt(1_700_000_000, 0).unwrap()),
        }]
    );
    assert_eq!((parsed.ignored, parsed.machine_opens), (0, 1));
}
