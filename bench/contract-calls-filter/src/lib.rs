//! An HTTP filter that makes, on every request, exactly the host calls keysync's filter
//! makes on an allowed one (read the credential, set the two identity headers, remove
//! both credential headers) and nothing else: no parsing, no hashing, no lookup. The least any filter
//! meeting the contract can cost, so the benchmarks can tell how much of keysync's cost
//! over the wasm floor is the contract's and how much is ours.
//!
//! With the plugin configuration `map` it does the same work in two host calls instead
//! of four: it reads the whole request header map at once and writes it back whole, the
//! one cut of the hot path not tried before (see bench/RESULTS.md for how it measured).
//!
//! Key policies (scopes, allowlists) add property reads; these modes measure them. The
//! configuration's first line is a comma-separated list of modes:
//! - `route-metadata`: also reads the route's required scopes from route metadata
//!   (`xds.route_metadata.filter_metadata.keysync.scopes`), what keysync's filter does
//!   on every authenticated request;
//! - `route-name`: instead reads `xds.route_name` and looks the scopes up in a table of
//!   the plugin configuration (every further line: `<route name> <scopes...>`), the
//!   alternative way for a route to name its scopes;
//! - `source-address`: also reads `source.address`, what a key with an allowlist costs;
//! - `route-header`: reads a request header `x-keysync-route-scopes` instead (absent
//!   here), what a route would cost that had Envoy set its scopes in a header (a
//!   header-mutation filter's per-route configuration) rather than in metadata.
#![forbid(unsafe_code)]

use keysync_contract::{KEY_ID_HEADER, ORG_ID_HEADER};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType};
use std::collections::HashMap;
use std::rc::Rc;

/// Identity values of the same length as real ones (hyphenated UUIDs).
const ORG_ID: &str = "00000000-0000-4000-8000-000000000001";
const KEY_ID: &str = "00000000-0000-4000-8000-000000000002";
const CREDENTIAL_HEADER: &str = "authorization";
/// A second credential is never forwarded either, so the contract removes it too.
const OTHER_CREDENTIAL_HEADER: &str = "x-api-key";

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(ContractCallsRoot { whole_map: false, extra: Rc::default() })
    });
}}

struct ContractCallsRoot {
    whole_map: bool,
    extra: Rc<Extra>,
}

/// The property reads a mode adds to the contract's calls.
#[derive(Default)]
struct Extra {
    route_metadata: bool,
    source_address: bool,
    route_header: bool,
    /// `route-name`: the scopes of each route, by route name.
    route_names: Option<HashMap<Vec<u8>, String>>,
}

impl Extra {
    fn parse(config: &str) -> Self {
        let mut lines = config.lines();
        let modes: Vec<&str> = lines
            .next()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .collect();
        Extra {
            route_metadata: modes.contains(&"route-metadata"),
            source_address: modes.contains(&"source-address"),
            route_header: modes.contains(&"route-header"),
            route_names: modes.contains(&"route-name").then(|| {
                lines
                    .filter_map(|line| line.trim().split_once(' '))
                    .map(|(name, scopes)| (name.as_bytes().to_vec(), scopes.trim().to_string()))
                    .collect()
            }),
        }
    }

    /// Results are used only so the reads are not optimized away.
    fn read(&self) -> usize {
        let mut seen = 0;
        if self.source_address {
            if let Ok(Some(address)) = hostcalls::get_property(vec!["source", "address"]) {
                seen += address.len();
            }
        }
        if self.route_metadata {
            let path = vec![
                "xds",
                "route_metadata",
                "filter_metadata",
                "keysync",
                "scopes",
            ];
            if let Ok(Some(scopes)) = hostcalls::get_property(path) {
                seen += scopes.len();
            }
        }
        if self.route_header {
            let request = MapType::HttpRequestHeaders;
            if let Ok(Some(scopes)) =
                hostcalls::get_map_value_bytes(request, "x-keysync-route-scopes")
            {
                seen += scopes.len();
            }
        }
        if let Some(table) = &self.route_names {
            if let Ok(Some(name)) = hostcalls::get_property(vec!["xds", "route_name"]) {
                seen += table.get(&name).map_or(0, String::len);
            }
        }
        seen
    }
}

impl Context for ContractCallsRoot {}

impl RootContext for ContractCallsRoot {
    fn on_configure(&mut self, size: usize) -> bool {
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        self.whole_map = config.as_slice() == b"map";
        self.extra = Rc::new(Extra::parse(&String::from_utf8_lossy(&config)));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(if self.whole_map {
            Box::new(WholeMapRequest)
        } else {
            Box::new(ContractCallsRequest {
                extra: Rc::clone(&self.extra),
            })
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct ContractCallsRequest {
    extra: Rc<Extra>,
}

impl Context for ContractCallsRequest {}

impl HttpContext for ContractCallsRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let request = MapType::HttpRequestHeaders;
        // Results are ignored on purpose: only the calls' cost is wanted.
        if let Ok(Some(_)) = hostcalls::get_map_value_bytes(request, CREDENTIAL_HEADER) {
            // Where keysync's filter reads them: after the key, before the headers.
            let _ = self.extra.read();
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
