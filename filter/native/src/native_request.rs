//! The core's `HttpRequest` for one of Envoy's HTTP streams: calls on the stream through its
//! handle (`abi::StreamRef`), which works from the stream's own hooks and from another
//! stream's on the same worker (a worker's tick deciding the requests it parked). Calls name
//! their stream, so `enter` has nothing to do.

use keysync_filter_core::{HostError, HttpRequest};

use crate::abi::{Attribute, HeaderMap, StreamRef};

/// What a call on a stream that Envoy no longer offers returns.
const UNAVAILABLE: HostError = HostError(1);

/// Route metadata `filter_metadata: { keysync: { scopes: "a:read b:write" } }`.
const ROUTE_SCOPES_NAMESPACE: &str = "keysync";
const ROUTE_SCOPES_KEY: &str = "scopes";

/// The `details` of the gateway's own replies in Envoy's access logs
/// (`%RESPONSE_CODE_DETAILS%`).
const REPLY_DETAILS: &str = "keysync";

#[derive(Clone)]
pub struct NativeRequest {
    pub stream: StreamRef,
}

fn done(ok: bool) -> Result<(), HostError> {
    if ok {
        Ok(())
    } else {
        Err(UNAVAILABLE)
    }
}

impl HttpRequest for NativeRequest {
    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        self.stream.header(HeaderMap::Request, name)
    }

    fn request_header_joined(&self, name: &str, separator: &[u8]) -> Option<Vec<u8>> {
        // The first read says how many lines there are: one call unless there are more.
        let values = self.stream.header_values(HeaderMap::Request, name);
        (!values.is_empty()).then(|| values.join(separator))
    }

    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        done(
            self.stream
                .set_header(HeaderMap::Request, name, value.as_bytes()),
        )
    }

    fn remove_request_header(&self, name: &str) -> Result<(), HostError> {
        done(self.stream.remove_header(HeaderMap::Request, name))
    }

    fn set_response_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        done(
            self.stream
                .set_header(HeaderMap::Response, name, value.as_bytes()),
        )
    }

    fn send_reply(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError> {
        done(
            self.stream
                .send_response(status, headers, body, REPLY_DETAILS),
        )
    }

    fn resume(&self) -> Result<(), HostError> {
        done(self.stream.continue_request())
    }

    fn source_address(&self) -> Option<Vec<u8>> {
        self.stream.attribute(Attribute::SourceAddress)
    }

    fn route_scopes(&self) -> Result<Option<Vec<u8>>, HostError> {
        if !self.stream.is_alive() {
            return Err(UNAVAILABLE);
        }
        // Absent, or not a string: Envoy says "not found" for both; a route whose scopes are
        // written as a list is then taken as requiring none, where the wasm filter refuses.
        Ok(self
            .stream
            .route_metadata(ROUTE_SCOPES_NAMESPACE, ROUTE_SCOPES_KEY))
    }

    fn route_name(&self) -> Result<Option<Vec<u8>>, HostError> {
        if !self.stream.is_alive() {
            return Err(UNAVAILABLE);
        }
        // A route without a name: Envoy says "not found", the core counts it as `-`.
        Ok(self.stream.attribute(Attribute::RouteName))
    }

    fn response_status(&self) -> Option<u32> {
        let value = self.stream.header(HeaderMap::Response, ":status")?;
        std::str::from_utf8(&value).ok()?.parse().ok()
    }

    fn enter(&self) -> Result<(), HostError> {
        if self.stream.is_alive() {
            Ok(())
        } else {
            Err(UNAVAILABLE)
        }
    }
}
