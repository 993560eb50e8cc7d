//! An HTTP filter that makes, on every request, exactly the host calls keysync's filter
//! makes on an allowed one (read the credential, set the two identity headers, remove
//! both credential headers) and nothing else: no parsing, no hashing, no lookup. The least any filter
//! meeting the contract can cost, so the benchmarks can tell how much of keysync's cost
//! over the wasm floor is the contract's and how much is ours.
//!
//! With the plugin configuration `map` it does the same work in two host calls instead
//! of four: it reads the whole request header map at once and writes it back whole, the
//! one cut of the hot path not tried before (see bench/RESULTS.md for how it measured).
#![forbid(unsafe_code)]

use keysync_contract::{KEY_ID_HEADER, ORG_ID_HEADER};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType};

/// Identity values of the same length as real ones (hyphenated UUIDs).
const ORG_ID: &str = "00000000-0000-4000-8000-000000000001";
const KEY_ID: &str = "00000000-0000-4000-8000-000000000002";
const CREDENTIAL_HEADER: &str = "authorization";
/// A second credential is never forwarded either, so the contract removes it too.
const OTHER_CREDENTIAL_HEADER: &str = "x-api-key";

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(ContractCallsRoot { whole_map: false })
    });
}}

struct ContractCallsRoot {
    whole_map: bool,
}

impl Context for ContractCallsRoot {}

impl RootContext for ContractCallsRoot {
    fn on_configure(&mut self, size: usize) -> bool {
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        self.whole_map = config.as_slice() == b"map";
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(if self.whole_map {
            Box::new(WholeMapRequest)
        } else {
            Box::new(ContractCallsRequest)
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct ContractCallsRequest;

impl Context for ContractCallsRequest {}

impl HttpContext for ContractCallsRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let request = MapType::HttpRequestHeaders;
        // Results are ignored on purpose: only the calls' cost is wanted.
        if let Ok(Some(_)) = hostcalls::get_map_value_bytes(request, CREDENTIAL_HEADER) {
            let _ = hostcalls::set_map_value(request, ORG_ID_HEADER, Some(ORG_ID));
            let _ = hostcalls::set_map_value(request, KEY_ID_HEADER, Some(KEY_ID));
            let _ = hostcalls::remove_map_value(request, CREDENTIAL_HEADER);
            let _ = hostcalls::remove_map_value(request, OTHER_CREDENTIAL_HEADER);
        }
        Action::Continue
    }
}

/// The same header changes through one read of the whole map and one write of it.
struct WholeMapRequest;

impl Context for WholeMapRequest {}

impl HttpContext for WholeMapRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let request = MapType::HttpRequestHeaders;
        let Ok(headers) = hostcalls::get_map_bytes(request) else {
            return Action::Continue;
        };
        if !headers.iter().any(|(name, _)| name == CREDENTIAL_HEADER) {
            return Action::Continue;
        }
        let mut map: Vec<(&str, &[u8])> = headers
            .iter()
            .filter(|(name, _)| {
                name != CREDENTIAL_HEADER
                    && name != OTHER_CREDENTIAL_HEADER
                    && name != ORG_ID_HEADER
                    && name != KEY_ID_HEADER
            })
            .map(|(name, value)| (name.as_str(), value.as_slice()))
            .collect();
        map.push((ORG_ID_HEADER, ORG_ID.as_bytes()));
        map.push((KEY_ID_HEADER, KEY_ID.as_bytes()));
        let _ = hostcalls::set_map_bytes(request, map);
        Action::Continue
    }
}
