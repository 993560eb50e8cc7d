//! The Standard Webhooks signature: `v1,` and the base64 of HMAC-SHA256, keyed with the
//! secret's bytes, of `{webhook-id}.{webhook-timestamp}.{body}`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::hmac;

/// The `webhook-signature` header of one attempt.
pub fn sign(key: &[u8], message_id: &str, timestamp: i64, body: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut context = hmac::Context::with_key(&key);
    context.update(message_id.as_bytes());
    context.update(b".");
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(context.sign().as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::secret::SigningSecret;

    /// The example of the Standard Webhooks specification (and of its libraries' tests).
    #[test]
    fn signs_the_specifications_example() {
        let secret =
            SigningSecret::from_stored("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned())
                .unwrap();
        assert_eq!(
            sign(
                &secret.key().unwrap(),
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                r#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
