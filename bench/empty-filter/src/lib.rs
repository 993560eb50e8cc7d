//! An HTTP filter that does nothing: what running any Rust proxy-wasm filter costs, so the
//! benchmarks can tell that floor apart from what keysync's filter adds on top of it.
#![forbid(unsafe_code)]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(EmptyRoot) });
}}

struct EmptyRoot;

impl Context for EmptyRoot {}

impl RootContext for EmptyRoot {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(EmptyRequest))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct EmptyRequest;

impl Context for EmptyRequest {}

impl HttpContext for EmptyRequest {}
