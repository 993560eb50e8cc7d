//! Which HTTP filters and bootstrap extensions this build of the module contains, by the
//! names Envoy's configuration gives them (`filter_name`, `extension_name`).

use crate::abi::{
    log, BootstrapConfig, BootstrapHandle, FilterConfigHandle, HttpFilterConfig, LogLevel, Module,
};

/// The module's entry point for configurations.
pub struct Registry;

impl Module for Registry {
    fn new_http_filter_config(
        &self,
        config: &mut FilterConfigHandle<'_>,
        name: &[u8],
        settings: &[u8],
    ) -> Option<Box<dyn HttpFilterConfig>> {
        #[cfg(feature = "demo")]
        if name == crate::demo::FILTER_NAME.as_bytes() {
            return crate::demo::new_filter_config(config, settings);
        }
        let _ = (config, settings);
        refuse("filter_name", name);
        None
    }

    fn new_bootstrap_config(
        &self,
        config: &mut BootstrapHandle<'_>,
        name: &[u8],
        settings: &[u8],
    ) -> Option<Box<dyn BootstrapConfig>> {
        #[cfg(feature = "demo")]
        if name == crate::demo::INIT_GATE_NAME.as_bytes() {
            return crate::demo::new_init_gate(config, settings);
        }
        let _ = (config, settings);
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
