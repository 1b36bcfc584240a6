//! The message providers' webhooks: each signature verified before its body is parsed, and
//! each provider's events turned into tracking calls.
