//! Which HTTP filters and bootstrap extensions this build of the module contains, by the
//! names Envoy's configuration gives them (`filter_name`, `extension_name`): the auth filter
//! (`keysync-auth`) and the sync service (`keysync-sync`), with the `demo` feature the
//! demonstration ones, and with `contract-calls` the benchmark control.

use crate::abi::{
    log, BootstrapConfig, BootstrapHandle, FilterConfigHandle, HttpFilterConfig, LogLevel, Module,
};
use crate::auth_filter::filter_config::{new_auth_filter_config, FILTER_NAME};
use crate::envoy_logger;
use crate::sync_extension::{new_sync_extension, EXTENSION_NAME};

/// The module's entry point for configurations.
pub struct Registry;

impl Module for Registry {
    fn new_http_filter_config(
        &self,
        config: &mut FilterConfigHandle<'_>,
        name: &[u8],
        settings: &[u8],
    ) -> Option<Box<dyn HttpFilterConfig>> {
        envoy_logger::install();
        if name == FILTER_NAME.as_bytes() {
            return new_auth_filter_config(config, settings);
        }
        #[cfg(feature = "demo")]
        if name == crate::demo::FILTER_NAME.as_bytes() {
            return crate::demo::new_filter_config(config, settings);
        }
        #[cfg(feature = "contract-calls")]
        if name == crate::contract_calls::FILTER_NAME.as_bytes() {
            return crate::contract_calls::new_filter_config(config, settings);
        }
        refuse("filter_name", name);
        None
    }

    fn new_bootstrap_config(
        &self,
        config: &mut BootstrapHandle<'_>,
        name: &[u8],
        settings: &[u8],
    ) -> Option<Box<dyn BootstrapConfig>> {
        envoy_logger::install();
        if name == EXTENSION_NAME.as_bytes() {
            return new_sync_extension(config, settings);
        }
        #[cfg(feature = "demo")]
        if name == crate::demo::INIT_GATE_NAME.as_bytes() {
            return crate::demo::new_init_gate(config, settings);
        }
        refuse("extension_name", name);
        None
    }
}

fn refuse(field: &str, name: &[u8]) {
    log(
        LogLevel::Error,
        &format!(
            "keysync native module: no {field} {:?} in this build",
            String::from_utf8_lossy(name)
        ),
    );
}
