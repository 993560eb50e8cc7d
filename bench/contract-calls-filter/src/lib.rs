//! An HTTP filter that makes, on every request, exactly the host calls keysync's filter
//! makes on an allowed one (read the credential, set the two identity headers, remove the
//! credential) and nothing else: no parsing, no hashing, no lookup. The least any filter
//! meeting the contract can cost, so the benchmarks can tell how much of keysync's cost
//! over the wasm floor is the contract's and how much is ours.
#![forbid(unsafe_code)]

use keysync_contract::{KEY_ID_HEADER, ORG_ID_HEADER};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, MapType};

/// Identity values of the same length as real ones (hyphenated UUIDs).
const ORG_ID: &str = "00000000-0000-4000-8000-000000000001";
const KEY_ID: &str = "00000000-0000-4000-8000-000000000002";
const CREDENTIAL_HEADER: &str = "authorization";

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(ContractCallsRoot) });
}}

struct ContractCallsRoot;

impl Context for ContractCallsRoot {}

impl RootContext for ContractCallsRoot {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(ContractCallsRequest))
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
        }
        Action::Continue
    }
}
