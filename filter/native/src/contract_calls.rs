//! A benchmark control (feature `contract-calls`, not the product): the HTTP filter
//! `keysync-contract-calls` makes, through the same ABI declarations (`abi`), only the calls
//! the contract needs on an allowed request: read `authorization`, look the key up in a
//! `HashMap`, set the two identity headers, remove the credential headers. No store, no
//! hash, no metering, no sync. `compare` races it beside Envoy's `api_key_auth` (c): what
//! it costs over no filter is what the dynamic-module ABI itself costs (issue 24), the
//! native counterpart of the wasm contract-calls filter (b').
//!
//! Its filter configuration is a number N: the HashMap holds the benchmark keys 1..=N
//! (`keysync-bench`'s `bench_keys::secret`), as `api_key_auth` holds them in its own. Or
//! `empty`: a filter that makes no call at all and lets every request through, the floor of
//! any dynamic module (what Envoy's side of the ABI costs a stream before a module does
//! anything), as the empty wasm filter (b) is the wasm floor.

use std::collections::HashMap;
use std::sync::Arc;

use keysync_contract::{KEY_ID_HEADER, ORG_ID_HEADER};

use crate::abi::{
    log, FilterConfigHandle, HeaderMap, HeadersStatus, HttpFilterConfig, HttpStream,
    HttpStreamFilter, LogLevel,
};

pub const FILTER_NAME: &str = "keysync-contract-calls";

/// The filter configuration of the empty filter.
const EMPTY: &str = "empty";

/// Identity values of the length of real ones (hyphenated UUIDs), as (b') sets.
const ORG_ID: &[u8] = b"00000000-0000-4000-8000-000000000001";
const KEY_ID: &[u8] = b"00000000-0000-4000-8000-000000000002";
const CREDENTIAL_HEADER: &str = "authorization";
/// A second credential is never forwarded either, so the contract removes it too.
const OTHER_CREDENTIAL_HEADER: &str = "x-api-key";
const BEARER: &[u8] = b"bearer ";

/// The secret of benchmark key `i` (the same as `keysync-bench`'s `bench_keys::secret`).
fn bench_secret(i: usize) -> String {
    format!("sk_live_bench{i:020}")
}

struct ContractCallsConfig {
    /// Key -> its number; the number is not used, the lookup is what is measured.
    keys: Arc<HashMap<Box<[u8]>, u32>>,
}

/// The configuration `empty`.
struct EmptyConfig;

pub fn new_filter_config(
    _config: &mut FilterConfigHandle<'_>,
    settings: &[u8],
) -> Option<Box<dyn HttpFilterConfig>> {
    let text = std::str::from_utf8(settings).unwrap_or_default().trim();
    if text == EMPTY {
        return Some(Box::new(EmptyConfig));
    }
    let Ok(count) = text.parse::<u32>() else {
        log(
            LogLevel::Error,
            "keysync-contract-calls: the filter configuration is the number of bench keys, or `empty`",
        );
        return None;
    };
    let keys = (1..=count)
        .map(|i| (bench_secret(i as usize).into_bytes().into_boxed_slice(), i))
        .collect();
    Some(Box::new(ContractCallsConfig {
        keys: Arc::new(keys),
    }))
}

impl HttpFilterConfig for ContractCallsConfig {
    fn new_stream(&self, _stream: &mut HttpStream<'_>) -> Box<dyn HttpStreamFilter> {
        Box::new(ContractCallsStream {
            keys: Arc::clone(&self.keys),
        })
    }
}

impl HttpFilterConfig for EmptyConfig {
    fn new_stream(&self, _stream: &mut HttpStream<'_>) -> Box<dyn HttpStreamFilter> {
        Box::new(EmptyStream)
    }
}

/// Every hook returns at once: Continue, no call to Envoy.
struct EmptyStream;

impl HttpStreamFilter for EmptyStream {
    fn on_request_headers(
        &mut self,
        _stream: &mut HttpStream<'_>,
        _end_of_stream: bool,
    ) -> HeadersStatus {
        HeadersStatus::Continue
    }
}

struct ContractCallsStream {
    keys: Arc<HashMap<Box<[u8]>, u32>>,
}

/// The key of an `authorization` value: after a case-insensitive `Bearer `.
fn bearer_key(value: &[u8]) -> Option<&[u8]> {
    let (scheme, key) = value.split_at_checked(BEARER.len())?;
    scheme.eq_ignore_ascii_case(BEARER).then_some(key)
}

impl HttpStreamFilter for ContractCallsStream {
    fn on_request_headers(
        &mut self,
        stream: &mut HttpStream<'_>,
        _end_of_stream: bool,
    ) -> HeadersStatus {
        let value = stream.header(HeaderMap::Request, CREDENTIAL_HEADER);
        let known = value
            .as_deref()
            .and_then(bearer_key)
            .is_some_and(|key| self.keys.contains_key(key));
        if !known {
            stream.send_response(403, &[], b"", "keysync-contract-calls");
            return HeadersStatus::StopIteration;
        }
        stream.set_header(HeaderMap::Request, ORG_ID_HEADER, ORG_ID);
        stream.set_header(HeaderMap::Request, KEY_ID_HEADER, KEY_ID);
        stream.remove_header(HeaderMap::Request, CREDENTIAL_HEADER);
        stream.remove_header(HeaderMap::Request, OTHER_CREDENTIAL_HEADER);
        HeadersStatus::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_bearer_key_whatever_the_scheme_case() {
        assert_eq!(bearer_key(b"Bearer sk_live_x"), Some(&b"sk_live_x"[..]));
        assert_eq!(bearer_key(b"bEARER sk_live_x"), Some(&b"sk_live_x"[..]));
        assert_eq!(bearer_key(b"Basic abc"), None);
        assert_eq!(bearer_key(b"Bear"), None);
    }

    #[test]
    fn its_keys_are_the_benchmarks() {
        assert_eq!(bench_secret(1), "sk_live_bench00000000000000000001");
    }
}
